from __future__ import annotations

from collections.abc import Sequence

import pytest

import toolgym
from toolgym.envs.catalog.unitconv.env import UnitConvEnv
from toolgym.envs.types import StopReason
from toolgym.errors import ConfigError, UnknownEnvError
from toolgym.rollouts import (
    ChaosPolicy,
    PolicyError,
    PolicyRequest,
    PolicyTurn,
    ScriptedPolicy,
    arun_episodes,
    run_episodes,
    sample_tasks,
)

ENV = "toolgym/unitconv-v0"


class SeedEcho:
    """Answers with the request seed, and records the batch sizes it was called with."""

    def __init__(self):
        self.batch_sizes: list[int] = []

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        self.batch_sizes.append(len(requests))
        return [PolicyTurn(text=f"seed {r.seed}") for r in requests]


@pytest.mark.parametrize("fmt", ["hermes", "openai", "kimi_k2"])
def test_gold_replays_reach_expected_state(fmt):
    factory = lambda: toolgym.make(ENV, tool_format=fmt)
    tasks = sample_tasks(factory, 50, seed=7)
    episodes = run_episodes(factory, ScriptedPolicy.gold(tasks, fmt), tasks=tasks, seed=7)
    assert [e.task.id for e in episodes] == [t.id for t in tasks]
    assert all(e.reached_expected_state for e in episodes)
    assert all(e.stop_reason is StopReason.ANSWERED and e.reward == 1.0 for e in episodes)
    assert all(e.error_counts() == {} for e in episodes)


def test_requests_are_batched_across_live_episodes():
    policy = SeedEcho()
    run_episodes(ENV, policy, n=40, concurrency=40)
    assert policy.batch_sizes == [40]  # every episode answers on its first turn
    policy = SeedEcho()
    run_episodes(ENV, policy, n=40, concurrency=40, max_batch=16)
    assert policy.batch_sizes == [16, 16, 8]


def test_same_seeds_same_episodes_whatever_the_concurrency():
    a = run_episodes(ENV, ChaosPolicy(), n=30, seed=3, concurrency=30)
    b = run_episodes(ENV, ChaosPolicy(), n=30, seed=3, concurrency=4, max_batch=3)
    strip = lambda eps: [e.model_dump(exclude={"wall_s", "turns"}) for e in eps]
    assert strip(a) == strip(b)
    assert [[t.text for t in e.turns] for e in a] == [[t.text for t in e.turns] for e in b]
    c = run_episodes(ENV, ChaosPolicy(), n=30, seed=4)
    assert strip(c) != strip(a)


def test_chaos_policy_errors_are_data_not_crashes():
    episodes = run_episodes(ENV, ChaosPolicy(answer_rate=0.0), n=40, seed=1)
    kinds = set().union(*(e.error_counts() for e in episodes))
    assert {"parse_error", "unknown_tool", "invalid_arguments"} <= kinds
    assert all(e.scorable and not e.stop_reason.is_failure for e in episodes)
    assert any(e.stop_reason is StopReason.MAX_TURNS for e in episodes)


def test_group_siblings_share_task_and_start_state():
    episodes = run_episodes(ENV, ChaosPolicy(), n=3, group_size=4, seed=11)
    assert len(episodes) == 12
    for g in range(3):
        group = episodes[4 * g : 4 * g + 4]
        assert len({e.group for e in group}) == 1 and len({e.task.id for e in group}) == 1
        assert len({e.messages[1].content for e in group}) == 1
        assert len({tuple(t.text for t in e.turns) for e in group}) > 1  # siblings sample differently


class FlakyPolicy:
    """Fails one request in three with a typed error, and one whole batch by raising."""

    def __init__(self):
        self.calls = 0

    async def generate(self, requests):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("endpoint exploded")
        return [
            PolicyTurn(finish_reason="error", error=PolicyError(kind="timeout", message="slow"))
            if r.seed % 3 == 0 else PolicyTurn(text="done")
            for r in requests
        ]


def test_policy_failures_end_only_their_episode():
    episodes = run_episodes(ENV, FlakyPolicy(), n=30, max_batch=10)
    failed = [e for e in episodes if e.failure is not None]
    assert failed and len(failed) < 30
    assert all(e.stop_reason is StopReason.POLICY_ERROR and not e.scorable and e.reward == 0 for e in failed)
    assert {e.failure.kind for e in failed} >= {"timeout", "model_error"}
    assert all(e.stop_reason is StopReason.ANSWERED for e in episodes if e.failure is None)


class CrashingEnv(UnitConvEnv):
    crashes = 0

    def setup(self, task):
        if CrashingEnv.crashes < 1:
            CrashingEnv.crashes += 1
            raise OSError("disk gone")
        super().setup(task)


def test_env_crash_is_retried_on_a_fresh_env_then_recorded():
    episodes = run_episodes(CrashingEnv, ScriptedPolicy({}, default=["ok"]), n=2)
    assert all(e.failure is None for e in episodes)  # one crash, retried
    CrashingEnv.crashes = -5
    episodes = run_episodes(CrashingEnv, ScriptedPolicy({}, default=["ok"]), n=1, env_retries=1)
    assert episodes[0].stop_reason is StopReason.ENV_ERROR
    assert episodes[0].failure.boundary == "env" and episodes[0].failure.attempts == 2


def test_a_task_the_env_rejects_is_raised_not_recorded_as_an_env_crash():
    (task,) = sample_tasks("toolgym/retail-v0", 1)
    bad = task.model_copy(update={"initial_state": {"bogus": 1}})
    with pytest.raises(ConfigError, match="initial_state does not fit RetailState"):
        run_episodes("toolgym/retail-v0", ScriptedPolicy.gold([bad]), tasks=[bad])


def test_bad_arguments_are_explained():
    with pytest.raises(UnknownEnvError, match="Did you mean"):
        run_episodes("toolgym/unitconv-v9", ChaosPolicy(), n=1)
    with pytest.raises(ConfigError, match="needs tasks"):
        run_episodes(ENV, ChaosPolicy())


async def test_async_api_inside_a_loop():
    episodes = await arun_episodes(ENV, ChaosPolicy(), n=3)
    assert len(episodes) == 3
    with pytest.raises(RuntimeError, match="arun_episodes"):
        run_episodes(ENV, ChaosPolicy(), n=1)


def test_deferred_gc_gives_the_same_episodes_and_restores_the_collector():
    import gc

    a = run_episodes(ENV, ChaosPolicy(), n=20, seed=2)
    b = run_episodes(ENV, ChaosPolicy(), n=20, seed=2, gc_policy="deferred")
    assert [e.model_dump(exclude={"wall_s", "turns"}) for e in a] == [e.model_dump(exclude={"wall_s", "turns"}) for e in b]
    assert gc.isenabled()
    with pytest.raises(ConfigError, match="gc_policy"):
        run_episodes(ENV, ChaosPolicy(), n=1, gc_policy="never")
