"""The judge budget: one concurrency limit, a per-call deadline and a cache, shared by critics.

Judge calls are the expensive part of scoring. Sharing one ``JudgeBudget`` between an
``LLMJudge`` and a ``PairwiseCritic`` bounds the calls in flight against one endpoint, and the
cache makes re-scoring identical judgements (same critic, rubric and transcript) free.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def cache_key(*parts: str) -> str:
    """A stable key for a judgement: SHA-256 over the parts, each length-prefixed."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class JudgementCache:
    """In-memory LRU of parsed judgements by ``cache_key``.

    Args:
        max_entries: Entries kept; the least recently used go first.
    """

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        """The judgement cached under ``key`` (now the most recently used), or None; counts hits and misses."""
        if key in self._data:
            self._data.move_to_end(key)
            self.hits += 1
            return self._data[key]
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        """Cache ``value`` under ``key``, evicting the least recently used beyond ``max_entries``."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class JudgeBudget:
    """Bounds how many judge calls run at once and how long each may take.

    Args:
        max_concurrency: Judge calls in flight at once, over every critic sharing the budget.
        deadline_s: Deadline of one call; past it the call is cancelled and counts as a timeout.
        cache: Cache of parsed judgements (a fresh one by default; None to disable).
    """

    def __init__(self, max_concurrency: int = 8, deadline_s: float = 60.0, cache: JudgementCache | None | bool = True):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.max_concurrency = max_concurrency
        self.deadline_s = deadline_s
        self.cache: JudgementCache | None = JudgementCache() if cache is True else (cache or None)
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self.in_flight = 0
        self.peak_in_flight = 0
        """Most calls ever in flight at once (a test of the limit reads it)."""

    def _semaphore(self) -> asyncio.Semaphore:
        # A semaphore belongs to one event loop; asyncio.run() in a loop of scorings makes new ones.
        loop = id(asyncio.get_running_loop())
        if loop not in self._semaphores:
            self._semaphores = {loop: asyncio.Semaphore(self.max_concurrency)}
        return self._semaphores[loop]

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` under the concurrency limit and the deadline.

        Raises:
            TimeoutError: the call ran past ``deadline_s`` (the waiting time does not count).
        """
        async with self._semaphore():
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await asyncio.wait_for(call(), timeout=self.deadline_s)
            finally:
                self.in_flight -= 1
