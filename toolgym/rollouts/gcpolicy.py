"""Garbage-collection policy for processes that host thousands of live environments.

Ten thousand API environments hold millions of GC-tracked objects. CPython's cyclic collector
re-traverses them whenever enough new objects survive, and with the default thresholds that
can take most of a step's time (``benchmarks/api_envs.py`` measures both policies). Episode
steps create no reference cycles, so a host can suspend the collector for a batch of episodes
and collect once at the end: plain reference counting still frees everything else at once.

>>> with deferred_gc() as stats:
...     pass
>>> stats.collected >= 0
True
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

GcPolicy = Literal["default", "deferred"]


@dataclass
class GcStats:
    """What the collection at the end of a deferred batch found and cost."""

    collected: int = 0
    """Unreachable objects found by the final collection (cycles the batch created)."""
    seconds: float = 0.0


@contextmanager
def deferred_gc() -> Iterator[GcStats]:
    """Suspend automatic cyclic collection inside the block; run one full collection on exit.

    Process-wide: other threads of the process are affected too. Cycles created inside the
    block live until its end, which is why batches, not whole training runs, go inside it.
    """
    stats = GcStats()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield stats
    finally:
        started = time.perf_counter()
        stats.collected = gc.collect()
        stats.seconds = time.perf_counter() - started
        if was_enabled:
            gc.enable()
