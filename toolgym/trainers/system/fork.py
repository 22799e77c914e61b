"""``ForkingPool``: the K siblings of a task start from one reset.

A GRPO group compares K episodes of one task, so they must start from the same world. With
``ForkingPool`` around any env pool (local or Ray), the first sibling to reach ``reset``
resets its env and snapshots it; the others restore that snapshot into their own envs and
receive the same first observation. For shell environments this runs the task's setup once
per group instead of K times; for every env it makes "same start" a fact, not a consequence
of seeding.

If the first reset fails (its env or actor died), its siblings fail too and the episode loop
retries each from the start (``env_retries``), the first of them resetting again.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.envs.types import Observation
from toolgym.rollouts.pool import EnvPool, StepOut

Origin = tuple[EnvSnapshot, Observation, dict[str, Any]]


class ForkingPool:
    """An ``EnvPool`` whose resets of one (seed, task) are done once and forked by snapshot/restore.

    Args:
        inner: The pool that hosts the envs.
        siblings: Episodes per group (K); a start is dropped once its K - 1 forks took it (a later
            retry of the same start resets for real, which gives the same state).
    """

    def __init__(self, inner: EnvPool, siblings: int | None = None) -> None:
        self.inner, self.siblings = inner, siblings
        self._taken: dict[tuple[int | None, str | None], int] = {}
        self._origins: dict[tuple[int | None, str | None], asyncio.Future[Origin]] = {}
        self.resets = 0
        """Real resets done (one per group)."""
        self.forks = 0
        """Resets answered by restoring a sibling's snapshot."""

    def bind(self, env_id: str, factory: Callable[[], ToolEnv]) -> None:
        self.inner.bind(env_id, factory)

    def forget(self) -> None:
        """Drop the cached starts (call between iterations: a later reset of the same seed is a new group)."""
        self._origins, self._taken = {}, {}

    async def acquire(self) -> Any:
        return await self.inner.acquire()

    async def reset(self, env: Any, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        task = (options or {}).get("task")
        key = (seed, getattr(task, "id", None))
        origin = self._origins.get(key)
        if origin is None:
            origin = asyncio.get_running_loop().create_future()
            self._origins[key] = origin
            try:
                obs, info = await self.inner.reset(env, seed=seed, options=options)
                snap = await self.inner.snapshot(env)
            except BaseException as exc:
                del self._origins[key]  # a retry resets for real
                origin.set_exception(exc)
                origin.exception()  # retrieved: siblings may not be waiting
                raise
            self.resets += 1
            origin.set_result((snap, obs, info))
            return obs, info
        snap, obs, info = await asyncio.shield(origin)
        self._taken[key] = self._taken.get(key, 0) + 1
        if self.siblings is not None and self._taken[key] >= self.siblings - 1 and self._origins.get(key) is origin:
            del self._origins[key], self._taken[key]  # every sibling has its start: keep memory flat
        await self.inner.restore(env, snap)
        self.forks += 1
        return copy.deepcopy(obs), copy.deepcopy(info)

    async def step(self, env: Any, action: str) -> StepOut:
        return await self.inner.step(env, action)

    async def digest(self, env: Any) -> str:
        return await self.inner.digest(env)

    async def snapshot(self, env: Any) -> EnvSnapshot:
        return await self.inner.snapshot(env)

    async def restore(self, env: Any, snap: EnvSnapshot) -> None:
        await self.inner.restore(env, snap)

    async def close(self, env: Any, *, reuse: bool = True) -> None:
        await self.inner.close(env, reuse=reuse)

    async def aclose(self) -> None:
        await self.inner.aclose()
