"""The one way toolgym runs a coroutine from sync code.

Every hook is written once, as ``async def``; its sync twin (``ToolEnv.step``, ``ToolBox.call``,
``SimulatedUser.reply``, ...) is a thin edge: ``return run_sync(self.ahook(...))``.

Most hooks never wait for anything (a pure-Python tool, a scripted user), so ``run_sync`` first
drives the coroutine by hand (``coro.send(None)``): when it finishes without suspending, the
value comes back at once, with no event loop. This keeps the sync hot path (``env.step``) as
fast as a plain function call.

Code that really waits (an async tool, a worker thread, a policy) first awaits
``loop_needed()``. Under ``run_sync`` that suspends the coroutine, and ``run_sync`` finishes it
on an event loop: this thread's own loop, or, when the caller is itself inside a running loop
(a sync ``step`` called from async code), a fresh loop on a short-lived thread, because a
running loop cannot be blocked on from within. Inside ordinary async code ``loop_needed()``
returns at once and costs one function call.

Two other places hold event loops, on purpose: ``toolgym.envs.shell.runtime`` and
``MCPClient`` keep a background loop each, because sandboxes and MCP sessions outlive single
calls and must stay bound to one loop. Whole runs (``run_episodes``, ``score_episodes``) are not
hooks: they own a fresh loop from start to end with ``asyncio.run``.

>>> async def add(a, b):
...     return a + b
>>> run_sync(add(1, 2))
3
"""

from __future__ import annotations

import asyncio
import os
import threading
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class _Driving(threading.local):
    """Per-thread state of ``run_sync``'s hand-driven first step."""

    active = False
    """True while ``run_sync`` is sending into a coroutine in this thread."""
    loop: asyncio.AbstractEventLoop | None = None
    """This thread's own loop for coroutines that suspend (created on first need)."""


_DRIVING = _Driving()


class _LoopNeeded:
    """What ``loop_needed`` yields to ``run_sync``: "finish me on an event loop"."""


_LOOP_NEEDED = _LoopNeeded()


@types.coroutine
def loop_needed() -> Generator[Any, None, None]:
    """Await this before waiting on asyncio (timers, futures, other tasks, I/O).

    Under ``run_sync`` it hands the coroutine over to an event loop; elsewhere it does nothing.
    """
    if _DRIVING.active:
        yield _LOOP_NEEDED


def driven_by_hand() -> bool:
    """True while ``run_sync`` drives a coroutine by hand in this thread.

    Its caller is plain sync code waiting for the result, so work done inline holds nobody
    else. (A sync edge called inside a running loop holds that loop for the whole call anyway;
    async code should await the async hook instead.)
    """
    return _DRIVING.active


def sync_inside_loop() -> bool:
    """True while ``run_sync`` drives a coroutine from sync code called inside a running loop.

    Its waits would then finish on a private loop in another thread; code bound to the
    caller's loop (a batching policy) checks this and refuses with a helpful message instead.
    """
    if not _DRIVING.active:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code and return its value (or raise its exception).

    Finishes without an event loop when the coroutine never suspends; otherwise see the module
    docstring. The coroutine is always closed when this returns.
    """
    driving = _DRIVING
    was = driving.active
    driving.active = True
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        driving.active = was
        return done.value
    except BaseException:
        driving.active = was
        coro.close()
        raise
    driving.active = was
    return _finish_on_loop(coro, yielded)


def _finish_on_loop(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    """Finish a coroutine that suspended under ``run_sync`` on an event loop."""
    if yielded is not _LOOP_NEEDED and yielded is not None:
        coro.close()
        raise RuntimeError(
            "a coroutine run from sync code waited on asyncio without first awaiting "
            "toolgym.aio.loop_needed(); add that await before the first asyncio wait"
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        was, _DRIVING.active = _DRIVING.active, False  # a real loop drives it from here on
        try:
            return _thread_loop().run_until_complete(_resume(coro))
        finally:
            _DRIVING.active = was
    # A running loop cannot be blocked on from inside: finish on a private loop in a thread.
    box: dict[str, Any] = {}

    def finish() -> None:
        try:
            box["value"] = asyncio.run(_resume(coro))
        except BaseException as exc:  # handed back to the calling thread below
            box["error"] = exc

    worker = threading.Thread(target=finish, name="toolgym-run-sync", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _resume(coro: Coroutine[Any, Any, T]) -> T:
    """Continue an already started coroutine as part of this task."""
    return await _Started(coro)


class _Started:
    """Awaitable over a started coroutine (``await coro`` refuses one that is mid-await)."""

    def __init__(self, coro: Coroutine[Any, Any, Any]):
        self.coro = coro

    def __await__(self) -> Generator[Any, None, Any]:
        return (yield from self.coro.__await__())


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop = _DRIVING.loop
    if loop is None or loop.is_closed():
        loop = _DRIVING.loop = asyncio.new_event_loop()
    return loop


def _after_fork() -> None:
    # The parent's loop (and its selector) must not be shared with a forked child.
    global _DRIVING
    _DRIVING = _Driving()


os.register_at_fork(after_in_child=_after_fork)
