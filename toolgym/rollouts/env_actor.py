"""``EnvActor``: one process hosting thousands of environments, stepped in batches.

``RayEnvPool`` turns this class into an async Ray actor (``ray.remote(EnvActor)``); the class
itself does not import Ray, so it can be tested and profiled in-process. Every method takes a
batch: the pool gathers the requests of all episodes pinned to an actor within one tick of its
event loop into one call, because a Ray round trip costs far more than one API-env step.

Rules the actor keeps:

- Envs are addressed by integer keys the pool assigns, one key per episode. ``reset_many``
  builds the env on first use (or reuses one a finished episode released).
- Steps of one env never overlap: each key has a lock, taken in key order.
- Tool code that may block runs off the event loop: envs step through ``astep``, whose toolbox
  runs sync tools with a deadline in threads and awaits async tools (MCP, sandboxes).
- A failure of one env is returned in its reply slot as the exception, never raised for the
  whole batch, so one broken env cannot fail the other episodes of a tick.
- A reply is exactly what the env's own method returned (``reset``'s pair, ``astep``'s
  5-tuple, ...): the caller keeps the episode's transcript, so nothing else travels.
"""

from __future__ import annotations

import asyncio
import copyreg
import gc
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from toolgym.envs import types
from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.errors import UnknownEnvError

Reply = Any
"""A per-item reply, or the exception that item raised."""


class EnvActor:
    """Hosts envs built by ``factory`` and serves batched calls on them.

    Args:
        factory: Builds one fresh env (a registered id's ``make`` or any user callable; it is
            pickled to the actor, so the code it needs must be importable there).
        gc_policy: "deferred" turns CPython's cyclic collector off in this process and collects
            when ``collect`` is called (thousands of live worlds make automatic passes slow).
    """

    def __init__(self, factory: Callable[[], ToolEnv], gc_policy: str = "deferred") -> None:
        self._factory = factory
        self._envs: dict[int, ToolEnv] = {}
        self._free: list[ToolEnv] = []
        self._locks: dict[int, asyncio.Lock] = {}
        if gc_policy == "deferred":
            gc.disable()
        fast_pickling()

    # ------------------------------------------------------------------ health

    async def ready(self) -> dict[str, Any]:
        """Build one env to prove the factory works here; report the host process."""
        try:
            env = self._factory()
        except UnknownEnvError as exc:
            raise UnknownEnvError(
                f"{exc} The Ray actors could not build this environment: the module that registers it is "
                "not imported in the actor processes. Register it in an importable module and ship that "
                "module to the cluster, e.g. RayEnvPool(runtime_env={'working_dir': '.', 'py_modules': [...]}) "
                "or `ray job submit --working-dir .`; or pass a callable that builds the env."
            ) from None
        self._free.append(env)
        return {"pid": os.getpid(), "env_class": type(env).__name__}

    async def stats(self) -> dict[str, Any]:
        """Live and idle env counts, resident memory (bytes) and CPU seconds of this process."""
        return {"live": len(self._envs), "idle": len(self._free), "rss": _rss_bytes(), "pid": os.getpid(), "cpu_s": time.process_time()}

    async def collect(self) -> int:
        """Run one full cyclic collection (the deferred policy's catch-up)."""
        return gc.collect()

    # ------------------------------------------------------------------ batched env calls

    async def reset_many(self, items: Sequence[tuple[int, int | None, dict[str, Any] | None]]) -> list[Reply]:
        """``(key, seed, options)`` each -> ``env.reset(seed=seed, options=options)`` or the exception."""
        out: list[Reply] = []
        for key, seed, options in items:
            try:
                env = self._envs.get(key)
                if env is None:
                    env = self._free.pop() if self._free else self._factory()
                    self._envs[key] = env
                out.append(env.reset(seed=seed, options=options))
            except Exception as exc:  # the caller's episode fails with it; the others go on
                out.append(exc)
        return out

    async def step_many(self, items: Sequence[tuple[int, str]]) -> list[Reply]:
        """``(key, action)`` each -> ``env.astep(action)`` (the gymnasium 5-tuple) or the exception."""
        out: list[Reply] = []
        waiting: list[tuple[int, asyncio.Task[Any]]] = []
        for key, action in items:
            coro = self._step(key, action)
            try:
                # Most steps never suspend (sync tools run inline): run them here, skipping the
                # cost of a Task each; a step that does suspend (a threaded or async tool)
                # continues in a Task of its own, so it holds up no other env.
                first = coro.send(None)
            except StopIteration as done:
                out.append(done.value)
                continue
            except Exception as exc:
                out.append(exc)
                continue
            out.append(None)
            waiting.append((len(out) - 1, asyncio.ensure_future(_resume(coro, first))))
        for slot, task in waiting:
            try:
                out[slot] = await task
            except Exception as exc:
                out[slot] = exc
        return out

    async def digest_many(self, keys: Sequence[int]) -> list[Reply]:
        """``state_digest()`` of each env."""
        return [self._call(key, lambda env: env.state_digest()) for key in keys]

    async def snapshot_many(self, keys: Sequence[int]) -> list[Reply]:
        """``snapshot()`` of each env (sent to the caller: it may be restored on any actor)."""
        return [self._call(key, lambda env: env.snapshot()) for key in keys]

    async def restore_many(self, items: Sequence[tuple[int, EnvSnapshot]]) -> list[Reply]:
        """Put each env back to a snapshot, building it first if this actor never saw the key."""
        out: list[Reply] = []
        for key, snap in items:
            try:
                env = self._envs.get(key)
                if env is None:
                    env = self._envs[key] = self._free.pop() if self._free else self._factory()
                env.restore(snap)
                out.append(None)
            except Exception as exc:
                out.append(exc)
        return out

    async def close_many(self, items: Sequence[tuple[int, bool]]) -> list[Reply]:
        """``(key, reuse)`` each: keep the env for a later episode, or close it for good."""
        out: list[Reply] = []
        for key, reuse in items:
            env = self._envs.pop(key, None)
            self._locks.pop(key, None)
            try:
                if env is not None and reuse:
                    self._free.append(env)
                elif env is not None:
                    env.close()
                out.append(None)
            except Exception as exc:
                out.append(exc)
        return out

    # ------------------------------------------------------------------ internals

    def _call(self, key: int, fn: Callable[[ToolEnv], Any]) -> Reply:
        env = self._envs.get(key)
        if env is None:
            return KeyError(f"env {key} is not on this actor (never reset, closed, or the actor restarted)")
        try:
            return fn(env)
        except Exception as exc:
            return exc

    async def _step(self, key: int, action: str) -> Any:
        env = self._envs.get(key)
        if env is None:
            raise KeyError(f"env {key} is not on this actor (never reset, closed, or the actor restarted)")
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            return await env.astep(action)


async def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    """Finish a coroutine that was started by hand and suspended on ``pending``.

    This is what an asyncio Task does for the coroutine it drives: wait for the future it
    yielded (None means "just yield once"), then resume it; its ``await`` reads the result.
    """
    while True:
        if pending is None:
            await asyncio.sleep(0)
        else:
            pending._asyncio_future_blocking = False
            try:
                await pending
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # this step itself was cancelled
                    coro.close()
                    raise
            except Exception:  # the coroutine reads the outcome itself when resumed
                pass
        try:
            pending = coro.send(None)
        except StopIteration as done:
            return done.value


# The models a step's reply carries. pydantic pickles each through Python-level
# __getstate__/__setstate__; these reducers send the field dict and rebuild without
# re-validation (the env built the values): the same objects, about half the CPU per reply.
_REPLY_MODELS: tuple[type[Any], ...] = (
    types.Observation, types.SystemMessage, types.UserMessage, types.AssistantMessage, types.ToolMessage,
    types.ToolCall, types.ToolResult, types.ToolError,
)


def _rebuild(cls: type[Any], fields: dict[str, Any], fields_set: set[str]) -> Any:
    obj = types.trusted(cls, fields)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)  # exactly as sent, not "all fields"
    return obj


def _reduce(model: Any) -> tuple[Any, ...]:
    return _rebuild, (type(model), model.__dict__, model.__pydantic_fields_set__)


def fast_pickling() -> None:
    """Pickle the message and result models of step replies by their field dicts (both ends of
    the Ray pool call this: the caller in ``RayEnvPool.bind``, each actor at start).

    What arrives equals what was sent (fields, set fields, types); only the CPU cost changes.
    """
    for cls in _REPLY_MODELS:
        copyreg.pickle(cls, _reduce)


def _rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
