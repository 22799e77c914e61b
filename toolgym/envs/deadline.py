"""Deadlines for synchronous tools: the call is interrupted where it runs, not just abandoned.

Python cannot kill a thread, but it can raise an exception inside one: a watchdog thread
raises ``DeadlineExceeded`` in the thread running a tool once its deadline passes
(``PyThreadState_SetAsyncExc``). A tool looping in Python stops at the deadline, plus the few
milliseconds the interrupt takes to land. A tool blocked inside one long C call (``time.sleep``,
a socket read, a lock) cannot be reached until that call returns, so where a sync tool runs is
a policy:

* **On a worker thread** (``ToolWorkers``), awaited without holding the caller: the caller gets
  a ``timeout`` back at the deadline (plus ``GRACE_S``) even if the tool is stuck in C; the
  stuck thread is abandoned until its C call returns. This is where a sync tool runs when
  it declares ``timeout_s``; when the step is driven from an event loop (``astep`` awaited by
  a rollout or an env pool), so the loop and every other episode on it keep going; and once
  the tool has been caught blocking (below).
* **Inline, in the caller's thread**, under the watchdog: when plain sync code drives the step
  (``env.step`` through ``toolgym.aio.run_sync``: the only thread held is the caller's own),
  and on an event loop for environments that declare ``ToolEnv.sync_tools_inline`` (their
  tools only compute in Python). A worker hand-off costs 50-100 µs a call; inline, the
  deadline costs well under a microsecond.
* **Caught blocking.** An inline call that ends more than ``LATE_S`` after its deadline was
  stuck where the interrupt could not land. It still ends as a ``timeout`` (and is rolled
  back), the tool is marked blocking (``mark_blocking``; one ``RuntimeWarning`` names it), and
  from then on it runs on the workers in this process, on every path.

Worker threads are shared by the process. A call waits in their queue while they are busy with
calls that are still within their deadlines (the wait is not charged to the tool's deadline);
when every thread is stuck past a deadline, new calls are refused with ``PoolSaturated``, an
``EnvError``: infrastructure, never a timeout charged to the model.

``DeadlineExceeded`` derives from ``BaseException`` so a tool's own ``except Exception``
cannot swallow it. It can land between any two bytecodes of the tool, including inside
``threading``'s Python-level primitives (``Event``, ``Condition``, ``queue.Queue``), where it can
leave a lock held: a tool should not share such objects with code outside the call. The
watchdog's own hand-off uses dict operations and ``SimpleQueue.put``, single C calls, for that
reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import math
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from toolgym.errors import EnvError

GRACE_S = 0.05
"""How long past its deadline a caller waits for a worker to report the interrupt before it
gives up on the call (the thread stays busy until its C call returns)."""
QUIET_LOOK_S = 0.5
"""With no call running, the watchdog looks again after this long (calls with later deadlines need
not wake it) ..."""
QUIET_LOOKS = 20
"""... this many times in a row, then sleeps until a call wakes it."""
LATE_S = 0.1
"""An inline call that ends this long after its deadline was blocked in C: see ``mark_blocking``."""


_now = time.monotonic
_thread_id = threading.get_ident


class DeadlineExceeded(BaseException):
    """Raised inside a tool whose deadline passed (not an ``Exception``: tools cannot catch it by accident)."""


class PoolSaturated(EnvError):
    """Every worker thread is stuck in an earlier call past its deadline (infrastructure, not the model)."""


class Overran(TimeoutError):
    """The call ended long (more than ``LATE_S``) after its deadline: it was blocked in C code,
    out of the watchdog's reach, and held its thread all that time."""


BLOCKING: dict[int, Callable[..., Any]] = {}
"""id(fn) -> fn of sync tools caught blocking past a deadline; they run on worker threads from now
on. Keyed by identity (a tool's callable need not be hashable); holding ``fn`` keeps its id unique."""


def mark_blocking(fn: Callable[..., Any], name: str) -> None:
    """Send tool ``fn`` (called ``name``) to the worker threads for the rest of this process."""
    if id(fn) not in BLOCKING:
        BLOCKING[id(fn)] = fn
        warnings.warn(
            f"tool {name!r} blocked past its deadline where it could not be interrupted (C code: a sleep, "
            "I/O, a lock); it runs on worker threads from now on. Declare @tool(timeout_s=...) on it, or "
            "drop sync_tools_inline from its environment, to say so up front.",
            RuntimeWarning,
            stacklevel=2,
        )


class Watchdog:
    """One daemon thread that interrupts calls running past their deadline.

    The hot path takes no lock. ``run`` publishes an entry in a dict and takes it back with
    ``dict.pop``; the watchdog claims an expired entry with the same ``pop`` before it
    interrupts. ``dict.pop`` is one atomic step under the GIL, so exactly one side gets the
    entry: when the caller gets it back, no interrupt was or will be sent; when the watchdog
    got it, the caller waits for the interrupt to be sent and withdraws it if it has not
    landed yet (so it cannot surface later, outside the tool).

    The thread sleeps until the earliest deadline it knows of and is woken only by a call
    whose deadline comes sooner. With steady deadlines that is about once per deadline, not
    hundreds of times a second: each wake-up takes the GIL from the thread running tools.
    """

    def __init__(self) -> None:
        self._entries: dict[int, list[Any]] = {}
        """id(entry) -> [thread id, deadline, sent]; ``sent`` turns True once the interrupt is out."""
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        """Tokens that wake the thread: ``put`` is a single C call, safe where an interrupt may land."""
        self._next_wake = math.inf
        """When the thread will look next (-inf while it is looking: nobody needs to wake it)."""
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def run(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
        """``fn(**kwargs)`` in this thread, interrupted at the deadline.

        Raises:
            TimeoutError: the deadline passed (the tool was interrupted, or finished too late).
            Overran: (a ``TimeoutError``) it finished more than ``LATE_S`` late: blocked in C.
        """
        if self._thread is None:
            self._start()  # before this call's entry exists: no interrupt can land in the thread start-up
        entry = [_thread_id(), _now() + timeout_s, False]
        key = id(entry)
        entries = self._entries
        try:
            try:
                # The interrupt may land from the moment the entry is published, so everything from
                # here on is inside the handlers, and the wake-up is one C call (SimpleQueue.put): an
                # exception raised inside threading's Python-level locks could leave one held.
                entries[key] = entry
                if entry[1] < self._next_wake:  # read after publishing the entry: _loop does the two the other way round
                    self._wake.put(None)
                return fn(**kwargs)
            finally:
                if entries.pop(key, None) is None:  # the watchdog claimed it: an interrupt is on its way
                    _withdraw(entry)
                    raise DeadlineExceeded
        except DeadlineExceeded:
            late = _now() - entry[1]
            if late > LATE_S:
                raise Overran(f"deadline of {timeout_s:g}s passed; the call held its thread {late:.2f}s longer") from None
            raise TimeoutError(f"deadline of {timeout_s:g}s passed") from None

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="toolgym-deadlines", daemon=True)
                thread.start()
                self._thread = thread

    def _loop(self) -> None:
        empty = 0
        wake = self._wake
        while True:
            while not wake.empty():  # wake-ups that came while we were looking: this look covers them
                wake.get_nowait()
            self._next_wake = -math.inf
            earliest = self._fire_expired()
            # Between short calls the dict is mostly empty: look again in a while rather than be
            # woken by the very next call; after a quiet stretch, sleep until one comes.
            empty = empty + 1 if earliest == math.inf else 0
            if empty and empty <= QUIET_LOOKS:
                earliest = _now() + QUIET_LOOK_S
            self._next_wake = earliest
            # A call may have started between the scan and the publication above without
            # waking us (it read -inf): look once more before sleeping.
            if self._fire_expired() < earliest:
                continue
            try:
                wake.get(timeout=None if earliest == math.inf else max(0.0, earliest - _now()))
            except queue.Empty:
                pass

    def _fire_expired(self) -> float:
        """Interrupt every call past its deadline; the earliest deadline still pending (inf: none)."""
        entries = self._entries
        now = _now()
        earliest = math.inf
        for key, entry in list(entries.items()):
            if entry[1] <= now:
                if entries.pop(key, None) is not None:
                    _async_raise(entry[0], DeadlineExceeded)
                    entry[2] = True
            elif entry[1] < earliest:
                earliest = entry[1]
        return earliest


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
    """Threads for sync tools that may block in C (see the module docstring for which run here).

    A call's deadline starts when a thread picks it up, not while it waits in the queue behind
    calls that are still within their own deadlines. A call stuck in C past its deadline keeps
    its thread until the C call returns (the watchdog interrupts it as soon as Python code runs
    again); when every thread is stuck like that, new calls are refused with ``PoolSaturated``
    instead of queueing behind them and timing out on the model's bill.

    Args:
        max_workers: Threads in the pool.
    """

    def __init__(self, max_workers: int = 32):
        self.max_workers = max_workers
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="toolgym-tool")
        self._running: dict[int, float] = {}
        """id(job) -> when that running call becomes stuck (its start + deadline + ``GRACE_S``)."""

    def stuck(self) -> int:
        """Calls now running past their deadline plus ``GRACE_S`` (each holds a thread)."""
        now = _now()
        return sum(1 for end in list(self._running.values()) if end < now)

    def submit(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> concurrent.futures.Future[Any]:
        """Queue ``fn(**kwargs)`` for a worker, run under the watchdog.

        The future holds the output, or ``TimeoutError``/``Overran`` for a call that ran past its
        deadline, or the tool's own exception.

        Raises:
            PoolSaturated: all ``max_workers`` threads are stuck past a deadline.
        """
        return self._submit(fn, kwargs, timeout_s, [])

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
        """``fn(**kwargs)`` on a worker; the awaiting task is back by the deadline plus ``GRACE_S``.

        Raises:
            TimeoutError: the deadline passed (the call may still hold its thread, stuck in C).
            PoolSaturated: every thread is stuck past a deadline, so the call cannot start.
        """
        started: list[float] = []
        waiter = asyncio.wrap_future(self._submit(fn, kwargs, timeout_s, started))
        while True:
            # Until it starts, wait one deadline at a time and check the pool is not clogged.
            give_up = (started[0] if started else _now()) + timeout_s + GRACE_S
            done, _ = await asyncio.wait((waiter,), timeout=max(give_up - _now(), 0.0))
            if done:
                return waiter.result()
            if started and _now() >= started[0] + timeout_s + GRACE_S:
                waiter.cancel()  # only detaches this task: the thread finishes the call in its own time
                raise TimeoutError(f"deadline of {timeout_s:g}s passed; the call is still blocked on its worker thread")
            if not started and self.stuck() >= self.max_workers:
                waiter.cancel()
                raise self._saturated()

    def _submit(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float, started: list[float]) -> concurrent.futures.Future[Any]:
        if len(self._running) >= self.max_workers and self.stuck() >= self.max_workers:
            raise self._saturated()
        running = self._running

        def job() -> Any:
            key = id(started)
            begin = _now()
            started.append(begin)
            running[key] = begin + timeout_s + GRACE_S
            try:
                return WATCHDOG.run(fn, kwargs, timeout_s)
            finally:
                running.pop(key, None)

        return self._pool.submit(job)

    def _saturated(self) -> PoolSaturated:
        return PoolSaturated(
            f"all {self.max_workers} tool worker threads are stuck in earlier calls past their deadlines; "
            "a tool blocks in C code (a sleep, I/O, a lock) without returning"
        )


WORKERS = ToolWorkers()
"""The process-wide worker threads for sync tools (see the module docstring for which run here)."""


def _after_fork() -> None:
    # A forked child (a Ray or multiprocessing worker) has none of these threads: start afresh.
    global WATCHDOG, WORKERS
    WATCHDOG = Watchdog()
    WORKERS = ToolWorkers(WORKERS.max_workers)


os.register_at_fork(after_in_child=_after_fork)
