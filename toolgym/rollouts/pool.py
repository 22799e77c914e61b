"""Env pools: where the environments of a rollout live.

The episode loop never touches an environment directly: it asks its pool for one, then resets,
steps, snapshots, restores, hashes and closes it through the pool, and reads nothing else from
it (the loop keeps the transcript). ``LocalEnvPool`` keeps environments in the caller's process
(the default); ``RayEnvPool`` (``toolgym.rollouts.ray_pool``) keeps them on Ray actors and hands
out opaque handles. Each call returns exactly what the env's own method returns, so an episode
reads the same whichever pool hosts it, and with the same seeds gives the same result.

>>> import asyncio
>>> pool = LocalEnvPool()
>>> pool.bind("toolgym/unitconv-v0", lambda: __import__("toolgym").make("toolgym/unitconv-v0"))
>>> async def one():
...     env = await pool.acquire()
...     obs, _ = await pool.reset(env, seed=0)
...     await pool.close(env)
...     return len(obs.messages)
>>> asyncio.run(one())
2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.envs.types import Observation
from toolgym.errors import ConfigError

StepOut = tuple[Observation, float, bool, bool, dict[str, Any]]
"""What ``step`` returns, as in gymnasium: observation, reward, terminated, truncated, info."""


@runtime_checkable
class EnvPool(Protocol):
    """Where environments live during a rollout. One pool serves one env kind at a time.

    ``bind`` is called once by ``run_episodes`` before any episode starts; it is where a pool
    checks that it can build the env (so bad input fails before any work). Handles returned by
    ``acquire`` are opaque: an episode passes them back to the pool and reads nothing from them.
    """

    def bind(self, env_id: str, factory: Callable[[], ToolEnv]) -> None:
        """Fix the env kind this pool builds; raise ``ConfigError`` if it cannot build it."""
        ...

    async def acquire(self) -> Any:
        """An environment handle for one episode (fresh or reused; ``reset`` follows)."""
        ...

    async def reset(self, env: Any, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        """``env.reset`` wherever the env lives."""
        ...

    async def step(self, env: Any, action: str) -> StepOut:
        """One assistant turn (``env.astep``); steps of one env never overlap."""
        ...

    async def digest(self, env: Any) -> str:
        """``state_digest()`` of the env's world."""
        ...

    async def snapshot(self, env: Any) -> EnvSnapshot:
        """``env.snapshot()`` brought to the caller."""
        ...

    async def restore(self, env: Any, snap: EnvSnapshot) -> None:
        """``env.restore(snap)`` wherever the env lives."""
        ...

    async def close(self, env: Any, *, reuse: bool = True) -> None:
        """The episode is done with ``env``: with ``reuse`` it may serve another episode; without
        (the env or its host broke) it is closed and never handed out again."""
        ...

    async def aclose(self) -> None:
        """Close every env the pool still holds."""
        ...


class LocalEnvPool:
    """Environments in the caller's process: the default pool of ``run_episodes``.

    Finished envs are kept and reused for later episodes (``reset`` rebuilds their world),
    which saves constructing thousands of envs in a long rollout.
    """

    def __init__(self) -> None:
        self._factory: Callable[[], ToolEnv] | None = None
        self._free: list[ToolEnv] = []
        self.env_id = ""

    def bind(self, env_id: str, factory: Callable[[], ToolEnv]) -> None:
        if self._factory is not None and self.env_id != env_id:
            # Reused envs of another kind would silently run the wrong environment.
            self._close_free()
        self.env_id, self._factory = env_id, factory

    async def acquire(self) -> ToolEnv:
        if self._factory is None:
            raise ConfigError("LocalEnvPool.acquire() before bind(): pass the pool to run_episodes, which binds it")
        env = self._free.pop() if self._free else self._factory()
        return env

    async def reset(self, env: ToolEnv, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        return env.reset(seed=seed, options=options)

    async def step(self, env: ToolEnv, action: str) -> StepOut:
        return await env.astep(action)

    async def digest(self, env: ToolEnv) -> str:
        return env.state_digest()

    async def snapshot(self, env: ToolEnv) -> EnvSnapshot:
        return env.snapshot()

    async def restore(self, env: ToolEnv, snap: EnvSnapshot) -> None:
        env.restore(snap)

    async def close(self, env: ToolEnv, *, reuse: bool = True) -> None:
        if reuse:
            self._free.append(env)
        else:
            env.close()

    async def aclose(self) -> None:
        self._close_free()

    def _close_free(self) -> None:
        while self._free:
            self._free.pop().close()


def make_pool(kind: str = "local", *, actors: int = 2, ray_address: str | None = None, **ray_options: Any) -> Any:
    """The pool a name stands for (the CLI's ``--pool``): "local" or "ray".

    Ray options (``num_cpus``, ``resources``, ...) are ``RayPoolConfig`` fields. The Ray pool is
    imported only here, so a local rollout never imports Ray.
    """
    if kind == "local":
        return LocalEnvPool()
    if kind == "ray":
        from toolgym.rollouts.ray_pool import RayEnvPool

        return RayEnvPool(actors=actors, address=ray_address, **ray_options)
    raise ConfigError(f"pool must be 'local' or 'ray', got {kind!r}")
