"""The sandbox runtime: one background event loop that owns every sandbox's pipes and processes.

Why a dedicated loop: a sandbox's pipes belong to the loop that opened them, and bwrap's
``--die-with-parent`` follows the *thread* that spawned it. One long-lived daemon thread gives
both a stable home, and lets sync code (``ToolEnv.reset``/``state_digest``) and any asyncio
loop (the rollout loop) share sandboxes without "attached to a different loop" errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_THREAD: threading.Thread | None = None


def runtime_loop() -> asyncio.AbstractEventLoop:
    """The runtime's event loop, started on first use (a daemon thread named toolgym-sandbox)."""
    global _LOOP, _THREAD
    with _LOCK:
        if _LOOP is None or _THREAD is None or not _THREAD.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _THREAD = threading.Thread(target=serve, name="toolgym-sandbox", daemon=True)
            _THREAD.start()
            ready.wait()
            _LOOP = loop
        return _LOOP


def on_runtime_thread() -> bool:
    """True when called from the runtime's own thread."""
    return _THREAD is not None and threading.current_thread() is _THREAD


async def on_runtime(coro: Awaitable[T]) -> T:
    """Await ``coro`` on the runtime loop, from whatever loop the caller runs on."""
    if on_runtime_thread():
        return await coro
    future = asyncio.run_coroutine_threadsafe(_wrap(coro), runtime_loop())
    # Shielded: a caller's deadline must not cancel a sandbox operation halfway through its
    # protocol; the operation ends by its own timeout and the sandbox stays consistent.
    return await asyncio.shield(asyncio.wrap_future(future))


def run_sync(coro: Awaitable[T], timeout: float | None = None) -> T:
    """Run ``coro`` on the runtime loop and block until it finishes.

    Raises:
        RuntimeError: called from the runtime thread itself (it would wait on itself forever).
    """
    if on_runtime_thread():
        raise RuntimeError("run_sync() called on the sandbox runtime thread; await the coroutine instead")
    future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(_wrap(coro), runtime_loop())
    return future.result(timeout)


async def _wrap(coro: Awaitable[Any]) -> Any:
    return await coro
