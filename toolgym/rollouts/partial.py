"""Partial rollouts (Kimi K1.5/K2): long episodes span several training iterations.

Each iteration gives every episode a budget of turns (or generated tokens). An episode that
runs over it is paused: its env keeps its state (alive in the pool, on its actor for a Ray
pool, or captured in a snapshot and released) and the episode resumes in the next iteration,
perhaps under a newer policy. Each ``Segment`` of the finished ``Episode`` records the policy
version that wrote its turns, so a trainer can weigh or drop stale ones.

>>> from toolgym.rollouts import ScriptedPolicy, sample_tasks
>>> tasks = sample_tasks("toolgym/unitconv-v0", n=3)
>>> runs = PartialRollouts("toolgym/unitconv-v0", turn_budget=2)
>>> policy = ScriptedPolicy.gold(tasks)
>>> done = runs.run_iteration(policy, policy_version=0, tasks=tasks)  # new episodes start
>>> version = 0
>>> while runs.paused:  # a trainer would update the policy between iterations
...     version += 1
...     done += runs.run_iteration(policy, policy_version=version)
>>> len(done), all(e.turns[s.turn_start:s.turn_end] for e in done for s in e.segments)
(3, True)
>>> [s.policy_version for s in done[-1].segments]
[0, 1, 2]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolgym.envs.env import EnvSnapshot
from toolgym.envs.types import StopReason, Task
from toolgym.errors import ConfigError
from toolgym.policy import Policy, SamplingParams
from toolgym.rollouts.batcher import RequestBatcher
from toolgym.rollouts.episode import Episode, Failure, Segment
from toolgym.rollouts.loop import EnvSource, EpisodeState, _factory, _Run
from toolgym.rollouts.pool import EnvPool, LocalEnvPool


@dataclass
class _Paused:
    """An unfinished episode between iterations."""

    index: int
    sibling: int
    task: Task | None
    group: str | None
    state: EpisodeState | None = None
    snapshot: EnvSnapshot | None = None
    segments: list[Segment] = field(default_factory=list)
    attempts: int = 1


class PartialRollouts:
    """Runs episodes across iterations under a per-iteration budget of turns or tokens.

    Args:
        env: A registered env id or a callable returning a fresh ``ToolEnv``.
        pool: Where envs live (``LocalEnvPool`` by default, or a ``RayEnvPool``).
        turn_budget: Turns an episode may play per iteration before it is paused.
        token_budget: Generated tokens per episode per iteration (needs a policy that returns
            token ids). A turn is never cut: the episode pauses after the turn that crossed it.
        keep_alive: True keeps a paused episode's env in the pool; False snapshots it, releases
            the env, and restores the snapshot into a fresh env on resume.
        seed, group_size, sampling, max_batch, concurrency, env_retries: as in ``run_episodes``;
            with the same values, an episode's turns equal those ``run_episodes`` gives when the
            policy does not change between iterations.
    """

    def __init__(
        self,
        env: EnvSource,
        *,
        pool: EnvPool | None = None,
        turn_budget: int | None = None,
        token_budget: int | None = None,
        keep_alive: bool = True,
        seed: int = 0,
        group_size: int = 1,
        sampling: SamplingParams | None = None,
        max_batch: int | None = None,
        concurrency: int = 256,
        env_retries: int = 1,
    ) -> None:
        if turn_budget is None and token_budget is None:
            raise ConfigError("PartialRollouts needs turn_budget=<turns> or token_budget=<tokens> per iteration")
        for name, value in (("turn_budget", turn_budget), ("token_budget", token_budget), ("group_size", group_size), ("concurrency", concurrency)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        self.env_id, factory = _factory(env)
        self.pool = pool if pool is not None else LocalEnvPool()
        self.pool.bind(self.env_id, factory)
        self.turn_budget, self.token_budget, self.keep_alive = turn_budget, token_budget, keep_alive
        self.seed, self.group_size, self.sampling = seed, group_size, sampling or SamplingParams()
        self.max_batch, self.concurrency, self.env_retries = max_batch, concurrency, env_retries
        self.iteration = 0
        self._waiting: list[_Paused] = []
        self._next_index = 0

    @property
    def paused(self) -> int:
        """Episodes waiting for the next iteration."""
        return len(self._waiting)

    def run_iteration(self, policy: Policy, *, policy_version: int, tasks: Sequence[Task] | None = None, n: int = 0) -> list[Episode]:
        """Synchronous ``arun_iteration``."""
        return asyncio.run(self.arun_iteration(policy, policy_version=policy_version, tasks=tasks, n=n))

    async def arun_iteration(self, policy: Policy, *, policy_version: int, tasks: Sequence[Task] | None = None, n: int = 0) -> list[Episode]:
        """Resume the paused episodes, start new ones (``tasks``, or ``n`` sampled), and return
        the episodes that finished in this iteration (the others stay paused)."""
        items: list[Task | None] = list(tasks) if tasks is not None else [None] * n
        fresh = [
            _Paused(self._next_index + i, k, t, f"{self.env_id}/{self.seed + self._next_index + i}" if self.group_size > 1 else None)
            for i, t in enumerate(items) for k in range(self.group_size)
        ]
        self._next_index += len(items)
        work, self._waiting = self._waiting + fresh, []
        gate = asyncio.Semaphore(self.concurrency)
        async with RequestBatcher(policy, max_batch=self.max_batch) as batcher:
            run = _Run(self.env_id, self.pool, batcher, self.sampling, self.seed, self.env_retries, None)

            async def one(item: _Paused) -> Episode | None:
                async with gate:
                    return await self._segment(run, item, policy_version)

            done = await asyncio.gather(*(one(item) for item in work))
        self.iteration += 1
        self._waiting = [item for item, ep in zip(work, done, strict=True) if ep is None]
        return [ep for ep in done if ep is not None]

    async def aclose(self) -> None:
        """Drop the paused episodes and hand their envs back to the pool."""
        for item in self._waiting:
            if item.state is not None:
                await self.pool.close(item.state.env, reuse=False)
        self._waiting = []

    # ------------------------------------------------------------------ internals

    async def _segment(self, run: _Run, item: _Paused, version: int) -> Episode | None:
        """Play one iteration's share of an episode; the finished episode, or None if paused."""
        while True:
            try:
                state = await self._resume(run, item)
                first = len(state.turns)
                finished = await run.advance(state, self._over_budget(first))
                item.segments.append(Segment(policy_version=version, iteration=self.iteration, turn_start=first, turn_end=len(state.turns)))
                if not finished:
                    await self._pause(item, state)
                    return None
                ep = await run.finish(state)
                await self.pool.close(state.env)
                ep.segments = item.segments
                if item.attempts > 1:
                    ep.metadata["env_retries"] = item.attempts - 1
                return ep
            except ConfigError:
                raise
            except Exception as exc:  # env or actor broke: start the episode over, or fail it typed
                if item.state is not None:
                    await self.pool.close(item.state.env, reuse=False)
                if item.attempts > self.env_retries:
                    return self._failed(item, exc)
                item.attempts += 1
                item.state, item.snapshot, item.segments = None, None, []

    async def _resume(self, run: _Run, item: _Paused) -> EpisodeState:
        if item.state is not None and item.snapshot is None:
            return item.state  # kept alive in the pool
        env = await self.pool.acquire()
        try:
            if item.state is None:
                item.state = await run.begin(env, item.index, item.sibling, item.task, self.seed + item.index, item.group)
                return item.state
            assert item.snapshot is not None
            await self.pool.restore(env, item.snapshot)
        except BaseException:
            await self.pool.close(env, reuse=False)
            raise
        item.state.env, item.snapshot = env, None
        return item.state

    async def _pause(self, item: _Paused, state: EpisodeState) -> None:
        item.state = state
        if not self.keep_alive:
            item.snapshot = await self.pool.snapshot(state.env)
            await self.pool.close(state.env)

    def _over_budget(self, first: int) -> Any:
        def over(state: EpisodeState) -> bool:
            segment = state.turns[first:]
            if self.turn_budget is not None and len(segment) >= self.turn_budget:
                return True
            if self.token_budget is None:
                return False
            if any(t.token_ids is None for t in segment):
                raise ConfigError("token_budget needs a policy that returns token ids (HFPolicy, OpenAIPolicy); use turn_budget")
            return sum(len(t.token_ids or []) for t in segment) >= self.token_budget

        return over

    def _failed(self, item: _Paused, exc: Exception) -> Episode:
        failure = Failure(boundary="env", kind=type(exc).__name__, message=str(exc)[:500], attempts=item.attempts)
        return Episode(
            id=f"{self.env_id}/{item.index}/{item.sibling}", env_id=self.env_id,
            task=item.task or Task(id=f"unsampled-{item.index}", instruction=""), seed=self.seed + item.index,
            stop_reason=StopReason.ENV_ERROR, failure=failure, group=item.group, segments=item.segments,
        )
