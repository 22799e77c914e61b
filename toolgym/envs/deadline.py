"""Deadlines for synchronous tools: the call is interrupted where it runs, not just abandoned.

Python cannot kill a thread, but it can raise an exception inside one: a watchdog thread
raises ``DeadlineExceeded`` in the thread running a tool once its deadline passes
(``PyThreadState_SetAsyncExc``). A tool looping in Python stops at the deadline plus one
watchdog tick; a tool blocked inside one long C call (``time.sleep``, a socket read) stops
when that call returns. Tools that may block in C therefore declare ``timeout_s`` and run on
``ToolWorkers`` threads, so the caller (often an event loop) is never held past the deadline.

``DeadlineExceeded`` derives from ``BaseException`` so a tool's own ``except Exception``
cannot swallow it.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from toolgym.errors import EnvError

TICK_S = 0.005
"""How often the watchdog looks at deadlines while calls are running."""
IDLE_AFTER_S = 1.0
"""The watchdog sleeps until the next call after this long without one."""


class DeadlineExceeded(BaseException):
    """Raised inside a tool whose deadline passed (not an ``Exception``: tools cannot catch it by accident)."""


class PoolSaturated(EnvError):
    """Every worker thread is still busy with an earlier call (infrastructure, not the model)."""


class _Entry:
    __slots__ = ("deadline", "fired", "thread_id")

    def __init__(self, thread_id: int, deadline: float):
        self.thread_id = thread_id
        self.deadline = deadline
        self.fired = False


class Watchdog:
    """One daemon thread that interrupts calls running past their deadline."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = True
        self._last_arm = 0.0
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
        """``fn(**kwargs)`` in this thread, interrupted at the deadline.

        Raises:
            TimeoutError: the deadline passed (the tool was interrupted, or finished too late).
        """
        token, entry = self._arm(timeout_s)
        try:
            try:
                return fn(**kwargs)
            finally:
                if self._disarm(token, entry):
                    raise DeadlineExceeded
        except DeadlineExceeded:
            raise TimeoutError(f"deadline of {timeout_s:g}s passed") from None

    def _arm(self, timeout_s: float) -> tuple[int, _Entry]:
        now = time.monotonic()
        entry = _Entry(threading.get_ident(), now + timeout_s)
        token = next(self._ids)
        self._entries[token] = entry
        self._last_arm = now
        if self._idle:
            self._start()
            self._wake.set()
        return token, entry

    def _disarm(self, token: int, entry: _Entry) -> bool:
        """Stop watching; True when the watchdog already fired (any pending interrupt is cleared)."""
        with self._lock:
            self._entries.pop(token, None)
            if entry.fired:
                # The interrupt may not have been delivered yet: withdraw it so it cannot
                # surface later, outside the tool, in whatever this thread does next.
                _async_raise(entry.thread_id, None)
            return entry.fired

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="toolgym-deadlines", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            if not self._entries and time.monotonic() - self._last_arm > IDLE_AFTER_S:
                self._idle = True
                if not self._entries:  # re-read after publishing _idle: _arm reads them the other way round
                    self._wake.wait()
                self._wake.clear()
            self._idle = False
            time.sleep(TICK_S)
            now = time.monotonic()
            for token, entry in list(self._entries.items()):
                if entry.deadline <= now:
                    with self._lock:
                        if self._entries.pop(token, None) is not None:
                            entry.fired = True
                            _async_raise(entry.thread_id, DeadlineExceeded)


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


WATCHDOG = Watchdog()
"""The process-wide watchdog (one thread, asleep while no call runs)."""




class ToolWorkers:
    """Threads for sync tools that declare ``timeout_s`` (they may block in C code).

    A hung call keeps its thread only while it is blocked in C; the watchdog interrupts it
    as soon as Python code runs again. When every worker is still busy, a new call is refused
    with ``PoolSaturated`` instead of queueing behind them and timing out on the model's bill.

    Args:
        max_workers: Threads in the pool.
    """

    def __init__(self, max_workers: int = 32):
        self.max_workers = max_workers
        self._slots = threading.BoundedSemaphore(max_workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="toolgym-tool")

    def submit(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> concurrent.futures.Future[Any]:
        """Start ``fn(**kwargs)`` on a worker under the watchdog.

        Raises:
            PoolSaturated: all ``max_workers`` threads are busy.
        """
        if not self._slots.acquire(blocking=False):
            raise PoolSaturated(
                f"all {self.max_workers} tool worker threads are busy with earlier calls that have not returned; "
                "a tool blocks in C code past its deadline"
            )
        future = self._pool.submit(WATCHDOG.run, fn, kwargs, timeout_s)
        future.add_done_callback(lambda _: self._slots.release())
        return future


WORKERS = ToolWorkers()
"""The process-wide workers for sync tools with a declared ``timeout_s``."""


def _after_fork() -> None:
    # A forked child (a Ray or multiprocessing worker) has none of these threads: start afresh.
    global WATCHDOG, WORKERS
    WATCHDOG = Watchdog()
    WORKERS = ToolWorkers(WORKERS.max_workers)


os.register_at_fork(after_in_child=_after_fork)
