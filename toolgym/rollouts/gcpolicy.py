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
    """Wall-clock time of that collection."""
    cpu_seconds: float = 0.0
    """CPU time this process spent on it (stable on a shared machine, unlike ``seconds``)."""


@contextmanager
def deferred_gc(*, freeze: bool = False) -> Iterator[GcStats]:
    """Suspend automatic cyclic collection inside the block; run one full collection on exit.

    Process-wide: other threads of the process are affected too. Cycles created inside the
    block live until its end, which is why batches, not whole training runs, go inside it.

    Args:
        freeze: After the collection, move every surviving object to the collector's
            permanent generation (``gc.freeze``), so the next batch's collection traverses
            only what that batch created, not the thousands of long-lived worlds, tasks and
            snapshots again. Frozen objects are still freed by reference counting; cycles
            among them are found only after ``gc.unfreeze()`` (steps create none).
    """
    stats = GcStats()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield stats
    finally:
        started, started_cpu = time.perf_counter(), time.process_time()
        # Right after our last freeze every generation was empty. If no collection ran since
        # and nothing was unfrozen, all that is not frozen is young: collecting generation 0
        # finds the same garbage as a full collection, at about 3/4 of its cost (measured).
        # Only gc.unfreeze() puts objects in the oldest generation without a collection, so an
        # empty oldest generation says nothing was unfrozen: a look at that (empty) list, where
        # gc.get_freeze_count() walks every frozen object (~40 us per live API env, measured).
        young_only = freeze and _AFTER_FREEZE[0] == _collections() and not gc.get_objects(2)
        stats.collected = gc.collect(0 if young_only else 2)
        if freeze:
            gc.freeze()
            _AFTER_FREEZE[0] = _collections()
        stats.seconds = time.perf_counter() - started
        stats.cpu_seconds = time.process_time() - started_cpu
        if was_enabled:
            gc.enable()


def _collections() -> tuple[int, ...]:
    """How many collections of each generation this process has run."""
    return tuple(generation["collections"] for generation in gc.get_stats())


_AFTER_FREEZE: list[tuple[int, ...] | None] = [None]
"""``_collections()`` right after ``deferred_gc(freeze=True)`` last froze the survivors."""
