"""The episode loop: many episodes at once in one process, policy requests batched across them.

Each episode is a coroutine that reads top to bottom: reset, ask the policy, step, repeat.
Whenever episodes wait for the policy, ``RequestBatcher`` gathers their requests into one
``policy.generate`` call. Results depend only on seeds, never on how requests were batched.

>>> import toolgym
>>> from toolgym.rollouts import run_episodes, sample_tasks, ScriptedPolicy
>>> tasks = sample_tasks("toolgym/unitconv-v0", n=4, seed=0)
>>> episodes = run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)
>>> [e.reached_expected_state for e in episodes]
[True, True, True, True]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from toolgym.envs.canonical import seed_from
from toolgym.envs.env import ToolEnv
from toolgym.envs.registry import make
from toolgym.envs.types import Message, StopReason, Task, ToolSpec
from toolgym.errors import ConfigError, EnvError, StepFailed
from toolgym.policy import Policy, PolicyRequest, SamplingParams
from toolgym.rollouts.batcher import RequestBatcher
from toolgym.rollouts.episode import Episode, Failure, TurnRecord
from toolgym.rollouts.gcpolicy import GcPolicy, deferred_gc
from toolgym.rollouts.pool import EnvPool, LocalEnvPool
from toolgym.rollouts.rows import next_prefix, token_metrics

EnvSource = str | Callable[[], ToolEnv]
OnEpisode = Callable[[Episode], None]


def _factory(env: EnvSource) -> tuple[str, Callable[[], ToolEnv]]:
    if isinstance(env, str):
        make(env)  # fail now, with suggestions, if the id is unknown
        return env, lambda: make(env)
    if callable(env):
        return getattr(env, "__name__", "custom"), env
    raise ConfigError(f"env must be a registered id or a callable returning a ToolEnv, got {type(env).__name__}")


def sample_tasks(env: EnvSource, n: int, seed: int = 0) -> list[Task]:
    """The tasks that ``run_episodes(env, ..., n=n, seed=seed)`` would sample, in order."""
    _, factory = _factory(env)
    instance = factory()
    tasks = []
    for i in range(n):
        _, info = instance.reset(seed=seed + i)
        tasks.append(info["task"])
    instance.close()
    return tasks


@dataclass
class EpisodeState:
    """An episode between turns: what ``advance`` needs to go on (partial rollouts keep these).

    The loop owns the episode: the transcript, the stop reason and the final answer are built
    here from what ``reset`` and ``step`` return, never read back from the env, so an env on a
    Ray actor needs no caller-side mirror.
    """

    env: Any
    index: int
    sibling: int
    reset_seed: int
    group: str | None
    task: Task
    tools: list[ToolSpec]
    episode_id: str
    started: float
    messages: list[Message] = field(default_factory=list)
    """The conversation so far: the reset's messages, then each step's assistant message and observation."""
    stop: StopReason | None = None
    """Why the env ended the episode (``info["stop_reason"]``), None while it runs."""
    final_answer: str = ""
    """The final answer the env reported when the episode ended."""
    turns: list[TurnRecord] = field(default_factory=list)
    failure: Failure | None = None
    final_digest: str | None = None
    outgrown: bool = False
    reward: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the env reported for the episode record (``info["episode_metadata"]``, e.g. a shell report)."""


class _Run:
    """State shared by the episodes of one ``arun_episodes`` call."""

    def __init__(self, env_id: str, pool: EnvPool, batcher: RequestBatcher, sampling: SamplingParams, seed: int, env_retries: int, on_episode: OnEpisode | None):
        self.env_id, self.pool, self.batcher = env_id, pool, batcher
        self.sampling, self.seed, self.env_retries, self.on_episode = sampling, seed, env_retries, on_episode

    async def episode(self, index: int, sibling: int, task: Task | None, group: str | None) -> Episode:
        """One episode, retried on a fresh env when the environment itself fails."""
        reset_seed = self.seed + index
        for attempt in range(1, self.env_retries + 2):
            env = None
            try:
                env = await self.pool.acquire()
                ep = await self._play(env, index, sibling, task, reset_seed, group)
                await self.pool.close(env)
                if attempt > 1:  # accounted for: this episode survived an env (or actor) crash
                    ep.metadata["env_retries"] = attempt - 1
                break
            except ConfigError:  # the user's task or config is wrong: a fresh env cannot fix it
                if env is not None:
                    await self.pool.close(env, reuse=False)
                raise
            except Exception as exc:  # the env (or the actor hosting it) broke: infrastructure, not the model
                if env is not None:
                    await self.pool.close(env, reuse=False)
                failure = Failure(boundary="env", kind=type(exc).__name__, message=str(exc)[:500], attempts=attempt)
                if attempt > self.env_retries:
                    ep = Episode(
                        id=f"{self.env_id}/{index}/{sibling}", env_id=self.env_id,
                        task=task or Task(id=f"unsampled-{index}", instruction=""), seed=reset_seed,
                        stop_reason=StopReason.ENV_ERROR, failure=failure, group=group,
                    )
        if self.on_episode is not None:
            self.on_episode(ep)
        return ep

    async def _play(self, env: ToolEnv, index: int, sibling: int, task: Task | None, reset_seed: int, group: str | None) -> Episode:
        state = await self.begin(env, index, sibling, task, reset_seed, group)
        await self.advance(state)
        return await self.finish(state)

    async def begin(self, env: Any, index: int, sibling: int, task: Task | None, reset_seed: int, group: str | None) -> EpisodeState:
        """Reset ``env`` for one episode; its turns are played by ``advance``."""
        started = time.perf_counter()
        obs, info = await self.pool.reset(env, seed=reset_seed, options={"task": task} if task is not None else None)
        task = info["task"]
        return EpisodeState(env=env, index=index, sibling=sibling, reset_seed=reset_seed, group=group, task=task,
                            tools=obs.tools, episode_id=f"{task.id}/{sibling}", started=started, messages=list(obs.messages))

    async def advance(self, state: EpisodeState, pause: Callable[[EpisodeState], bool] | None = None) -> bool:
        """Play turns until the episode ends (True) or ``pause(state)`` asks to stop after a turn (False).

        Partial rollouts pause an episode here and continue it later, maybe with a newer policy.
        """
        turns, messages = state.turns, state.messages
        while state.stop is None:
            prefix_ids, prefix_messages = next_prefix(turns)  # token-level policies extend these ids
            request = PolicyRequest(
                episode_id=state.episode_id, task_id=state.task.id, messages=list(messages), tools=state.tools,
                # >> 1: 63 bits, so a policy seed fits a signed int64 (the OpenAI API's `seed`)
                seed=seed_from(self.seed, state.index, state.sibling, len(turns)) >> 1, sampling=self.sampling,
                prefix_token_ids=prefix_ids, prefix_messages=prefix_messages,
            )
            t0 = time.perf_counter()
            out = await self.batcher.generate(request)
            t1 = time.perf_counter()
            if out.error is not None:
                # A conversation that outgrew the context window is a truncation, not a failure.
                state.outgrown = out.error.kind == "context_overflow"
                if not state.outgrown:
                    state.failure = Failure(boundary="policy", kind=out.error.kind, message=out.error.message)
                return True
            start = len(messages) + 1  # the assistant message comes first
            try:
                obs, state.reward, _, _, info = await self.pool.step(state.env, out.text)
            except (ConfigError, EnvError):
                raise
            except Exception as exc:  # name the turn and the input: the model's input should never crash an env
                raise StepFailed(len(turns) + 1, out.text, exc) from exc
            messages.append(info["assistant"])
            messages.extend(obs.messages)
            state.stop = info["stop_reason"]
            state.final_answer = info["final_answer"]
            state.final_digest = info.get("state_digest")
            state.metadata.update(info.get("episode_metadata") or {})
            turns.append(
                TurnRecord(
                    text=out.text, prompt_token_ids=out.prompt_token_ids, token_ids=out.token_ids,
                    logprobs=out.logprobs, finish_reason=out.finish_reason, tool_calls=info["tool_calls"],
                    errors=info["errors"], faults=info.get("faults", []), observation_start=start, reward=state.reward,
                    env_s=time.perf_counter() - t1, policy_s=t1 - t0, routed_experts=out.routed_experts,
                )
            )
            if state.stop is None and pause is not None and pause(state):
                return False
        return True

    async def finish(self, state: EpisodeState) -> Episode:
        """The ``Episode`` record of a state that ``advance`` played to its end."""
        turns, failure = state.turns, state.failure
        stop = StopReason.POLICY_ERROR if failure is not None else StopReason.CONTEXT_LIMIT if state.outgrown else state.stop
        assert stop is not None
        failure = failure or _infrastructure_failure(stop, turns, state.messages)
        return Episode(
            id=state.episode_id, env_id=self.env_id, task=state.task, seed=state.reset_seed, tools=state.tools,
            messages=list(state.messages), turns=turns, stop_reason=stop, reward=state.reward if failure is None else 0.0,
            final_answer=state.final_answer, final_state_digest=state.final_digest or await self.pool.digest(state.env), failure=failure,
            metrics={"turns": float(len(turns)), "tool_calls": float(sum(t.tool_calls for t in turns)),
                     "bad_calls": float(sum(sum(t.errors.values()) for t in turns)), **token_metrics(turns)},
            wall_s=time.perf_counter() - state.started, group=state.group, metadata=state.metadata,
        )


def _infrastructure_failure(stop: StopReason, turns: list[TurnRecord], messages: list[Message]) -> Failure | None:
    """The stated policy for infrastructure trouble the env reported rather than raised.

    An env that ends an episode with ``env_error`` (a dead MCP server, too many simulator
    failures) fails the episode. A tool simulator that produced unusable output made the
    episode unfair to the model even if it went on: it is unscorable, attributed to the
    simulator. Injected faults are deliberate and stay scorable.
    """
    if stop is StopReason.ENV_ERROR:
        last = messages[-1] if messages else None
        return Failure(boundary="env", kind="env_error", message=str(getattr(last, "content", ""))[:500])
    broken = sum(t.errors.get("simulator_error", 0) for t in turns)
    if broken:
        return Failure(boundary="simulator", kind="simulator_error", message=f"{broken} tool result(s) came from a broken simulator")
    return None

async def arun_episodes(
    env: EnvSource,
    policy: Policy,
    *,
    tasks: Sequence[Task] | None = None,
    n: int | None = None,
    seed: int = 0,
    group_size: int = 1,
    concurrency: int = 256,
    sampling: SamplingParams | None = None,
    max_batch: int | None = None,
    env_retries: int = 1,
    on_episode: OnEpisode | None = None,
    gc_policy: GcPolicy = "default",
    pool: EnvPool | None = None,
) -> list[Episode]:
    """Run episodes concurrently and return them in task order (siblings adjacent).

    Args:
        env: A registered env id or a callable that returns a fresh ``ToolEnv``.
        policy: Any ``Policy``; its requests are batched across live episodes.
        tasks: Tasks to run, one group each. Without tasks, ``n`` tasks are sampled by the env
            from seeds ``seed, seed+1, ...``.
        n: Number of tasks to sample when ``tasks`` is None.
        seed: Base seed: reset seeds are ``seed + task index``; policy seeds derive from it.
        group_size: Episodes per task (GRPO siblings), sharing a ``group`` id and reset seed.
        concurrency: Episodes alive at once.
        sampling: Sampling parameters sent with every request.
        max_batch: Most requests in one ``policy.generate`` call (default: no limit).
        env_retries: Fresh-env retries after an environment crash before the episode is
            recorded as an ``env_error`` failure.
        on_episode: Called with each finished episode (progress bars, streaming writers).
        gc_policy: "deferred" suspends CPython's cyclic collector for the run and collects once
            at the end (much faster with thousands of live envs; see ``gcpolicy``).
        pool: Where the envs live: ``LocalEnvPool()`` (default, this process) or
            ``RayEnvPool(actors=4)`` (Ray actors). Same seeds, same episodes, whichever pool.
    """
    if tasks is None and n is None:
        raise ConfigError("run_episodes needs tasks=[...] or n=<number of tasks to sample>")
    if group_size < 1 or concurrency < 1:
        raise ConfigError(f"group_size and concurrency must be >= 1, got {group_size} and {concurrency}")
    env_id, factory = _factory(env)
    env_pool = pool if pool is not None else LocalEnvPool()
    env_pool.bind(env_id, factory)  # a pool that cannot build the env says so before any work
    items: list[Task | None] = list(tasks) if tasks is not None else [None] * int(n)  # type: ignore[arg-type]  # n is given when tasks is None (checked above)
    if gc_policy not in ("default", "deferred"):
        raise ConfigError(f"gc_policy must be 'default' or 'deferred', got {gc_policy!r}")
    with deferred_gc() if gc_policy == "deferred" else nullcontext():
        async with RequestBatcher(policy, max_batch=max_batch) as batcher:
            run = _Run(env_id, env_pool, batcher, sampling or SamplingParams(), seed, env_retries, on_episode)
            gate = asyncio.Semaphore(concurrency)

            async def one(index: int, sibling: int, task: Task | None) -> Episode:
                async with gate:
                    group = f"{env_id}/{seed + index}" if group_size > 1 else None
                    return await run.episode(index, sibling, task, group)

            jobs = [one(i, k, t) for i, t in enumerate(items) for k in range(group_size)]
            try:
                return list(await asyncio.gather(*jobs))
            finally:
                if pool is None:  # a pool the caller passed in stays theirs to reuse and close
                    await env_pool.aclose()


def run_episodes(env: EnvSource, policy: Policy, **kwargs: Any) -> list[Episode]:
    """Synchronous ``arun_episodes`` (same arguments). Inside an event loop, await that instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_episodes(env, policy, **kwargs))
    raise RuntimeError("run_episodes() was called inside a running event loop; use `await arun_episodes(...)`")
