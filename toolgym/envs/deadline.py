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
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from toolgym.errors import EnvError

TICK_S = 0.005
"""How often the watchdog looks at deadlines while calls are running."""
IDLE_TICKS = 200
"""The watchdog sleeps until the next call after this many ticks (about a second) without one."""


_now = time.monotonic
_thread_id = threading.get_ident


class DeadlineExceeded(BaseException):
    """Raised inside a tool whose deadline passed (not an ``Exception``: tools cannot catch it by accident)."""


class PoolSaturated(EnvError):
    """Every worker thread is still busy with an earlier call (infrastructure, not the model)."""


class Watchdog:
    """One daemon thread that interrupts calls running past their deadline.

    The hot path takes no lock. ``run`` publishes an entry in a dict and takes it back with
    ``dict.pop``; the watchdog claims an expired entry with the same ``pop`` before it
    interrupts. ``dict.pop`` is one atomic step under the GIL, so exactly one side gets the
    entry: when the caller gets it back, no interrupt was or will be sent; when the watchdog
    got it, the caller waits for the interrupt to be sent and withdraws it if it has not
    landed yet (so it cannot surface later, outside the tool).
    """

    def __init__(self) -> None:
        self._entries: dict[int, list[Any]] = {}
        """id(entry) -> [thread id, deadline, sent]; ``sent`` turns True once the interrupt is out."""
        self._wake = threading.Event()
        self._idle = True
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
        """``fn(**kwargs)`` in this thread, interrupted at the deadline.

        Raises:
            TimeoutError: the deadline passed (the tool was interrupted, or finished too late).
        """
        entry = [_thread_id(), _now() + timeout_s, False]
        key = id(entry)
        entries = self._entries
        entries[key] = entry
        if self._idle:
            self._start()
        try:
            try:
                return fn(**kwargs)
            finally:
                if entries.pop(key, None) is None:  # the watchdog claimed it: an interrupt is on its way
                    _withdraw(entry)
                    raise DeadlineExceeded
        except DeadlineExceeded:
            raise TimeoutError(f"deadline of {timeout_s:g}s passed") from None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="toolgym-deadlines", daemon=True)
            self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        entries = self._entries
        quiet = 0
        while True:
            quiet = 0 if entries else quiet + 1
            if quiet > IDLE_TICKS:
                self._idle = True
                if not entries:  # re-read after publishing _idle: run() does the two the other way round
                    self._wake.wait()
                self._wake.clear()
                quiet = 0
            self._idle = False
            time.sleep(TICK_S)
            now = time.monotonic()
            for key, entry in list(entries.items()):
                if entry[1] <= now and entries.pop(key, None) is not None:
                    _async_raise(entry[0], DeadlineExceeded)
                    entry[2] = True


def _withdraw(entry: list[Any]) -> None:
    """Called by the thread whose entry the watchdog claimed: make sure no interrupt stays pending."""
    try:
        while not entry[2]:  # the watchdog is between its claim and the send (a few bytecodes)
            time.sleep(0)
        _async_raise(entry[0], None)  # not delivered yet: take it back
    except DeadlineExceeded:
        pass  # it landed here instead: consumed, nothing stays pending


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
