"""RayEnvPool: same episodes as the local pool, batched actor calls, and bad input refused early."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs.catalog.unitconv.env import UnitConvEnv
from toolgym.errors import ConfigError
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, run_episodes, sample_tasks

ray = pytest.importorskip("ray")
from toolgym.rollouts.ray_pool import EnvCallTimeout, RayEnvPool, RayPoolConfig

UNITCONV = "toolgym/unitconv-v0"


@pytest.fixture(scope="module")
def pool(ray_local):
    with RayEnvPool(actors=2, num_cpus=0.5) as p:
        yield p


def comparable(episodes):
    """Episodes without wall-clock timings (the only fields allowed to differ between pools)."""
    return [e.without_timings() for e in episodes]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 24))
def test_ray_pool_equals_local_pool_with_scripted_policy(pool, seed, n):
    tasks = sample_tasks(UNITCONV, n=n, seed=seed)
    local = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, seed=seed)
    remote = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, seed=seed, pool=pool)
    assert comparable(remote) == comparable(local)
    assert all(e.reached_expected_state for e in remote)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), answer_rate=st.floats(0.0, 0.5))
def test_ray_pool_equals_local_pool_with_bad_calls_and_groups(pool, seed, answer_rate):
    kwargs = dict(n=12, seed=seed, group_size=3, concurrency=7)
    local = run_episodes(UNITCONV, ChaosPolicy(answer_rate=answer_rate), **kwargs)
    remote = run_episodes(UNITCONV, ChaosPolicy(answer_rate=answer_rate), pool=pool, **kwargs)
    assert comparable(remote) == comparable(local)
    assert sum(sum(e.error_counts().values()) for e in remote) > 0  # bad calls really crossed the actors


def test_snapshot_on_one_env_restores_on_another_through_the_pool(pool):
    async def go():
        a, b = await pool.acquire(), await pool.acquire()
        await pool.reset(a, seed=3)
        await pool.step(a, '<tool_call>{"name": "store", "arguments": {"name": "x", "value": 2.5}}</tool_call>')
        snap = await pool.snapshot(a)
        await pool.reset(b, seed=99)
        await pool.restore(b, snap)
        snap_a, snap_b = await pool.snapshot(a), await pool.snapshot(b)  # the envs, read through the pool only
        assert snap_b.messages == snap_a.messages and snap_b.task == snap_a.task
        same = '<tool_call>{"name": "recall", "arguments": {"name": "x"}}</tool_call>'
        out_a, out_b = await pool.step(a, same), await pool.step(b, same)
        assert out_a[0] == out_b[0] and await pool.digest(a) == await pool.digest(b)
        for env in (a, b):
            await pool.close(env)

    asyncio.run(go())


def test_one_tick_of_episodes_is_one_actor_call_per_actor(pool):
    calls: list[int] = []
    real = pool._lane  # count the batches the lanes send (one per actor per tick when not backpressured)

    def spy(slot):
        lane = real(slot)
        if not getattr(lane, "spied", False):
            submit = lane.submit

            def counted(method, payload):
                if method == "step_many" and not lane.pending.get(method):
                    calls.append(slot)
                return submit(method, payload)

            lane.submit, lane.spied = counted, True
        return lane

    pool._lane = spy
    try:
        tasks = sample_tasks(UNITCONV, n=64, seed=5)
        eps = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=pool)
    finally:
        del pool._lane
    steps = sum(len(e.turns) for e in eps)
    assert len(calls) < steps / 8, (len(calls), steps)  # 64 episodes share a tick: batches, not single steps


# ------------------------------------------------------------------ bad input, before any work


def test_unreachable_address_is_refused_fast():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="no Ray cluster answers at '127.0.0.1:1'.*ray start --head"):
        RayEnvPool(address="127.0.0.1:1").bind(UNITCONV, lambda: toolgym.make(UNITCONV))
    assert time.perf_counter() - started < 10


def test_more_cpus_than_the_cluster_has_is_refused(ray_local):
    with pytest.raises(ConfigError, match=r"asks 64 CPU \(8 actors x 8\).*--actors"):
        RayEnvPool(actors=8, num_cpus=8).bind(UNITCONV, lambda: toolgym.make(UNITCONV))
    with pytest.raises(ConfigError, match=r"asks 2 sandbox_host \(2 actors x 1\) but the Ray cluster has 0 free of 0"):
        RayEnvPool(actors=2, num_cpus=0.1, resources={"sandbox_host": 1}).bind(UNITCONV, lambda: toolgym.make(UNITCONV))


def test_bad_pool_field_is_named():
    with pytest.raises(ValueError, match="actors"):
        RayPoolConfig(actors=0)
    with pytest.raises(ValueError, match="max_inflight"):
        RayEnvPool(max_inflight=0)


def test_env_unknown_to_the_actors_says_how_to_ship_it(ray_local):
    toolgym.register("local/only-here-v0", UnitConvEnv)  # registered in this process only
    try:
        tasks = sample_tasks("local/only-here-v0", n=1)
        with RayEnvPool(actors=1, num_cpus=0.5) as p, pytest.raises(ConfigError, match="runtime_env.*working_dir"):
            run_episodes("local/only-here-v0", ScriptedPolicy.gold(tasks), tasks=tasks, pool=p)
    finally:
        toolgym.envs.registry.unregister("local/only-here-v0")


class SlowEnv(UnitConvEnv):
    """Blocks its actor for longer than the pool's call deadline."""

    async def astep(self, action):
        time.sleep(1.5)
        return await super().astep(action)


def test_a_call_past_its_deadline_is_a_typed_env_failure(ray_local):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    tasks = sample_tasks(UNITCONV, n=2)
    with RayEnvPool(actors=1, num_cpus=0.5, call_timeout_s=0.3) as p:
        eps = run_episodes(SlowEnv, ScriptedPolicy.gold(tasks), tasks=tasks, pool=p, env_retries=0)
    assert [e.failure.kind for e in eps] == ["EnvCallTimeout", "EnvCallTimeout"]
    assert all(e.failure.boundary == "env" and not e.scorable for e in eps)
    assert issubclass(EnvCallTimeout, toolgym.errors.EnvError)


def test_ray_pool_equals_local_pool_with_a_seeded_tiny_model(pool):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model
    from toolgym.rollouts import SamplingParams

    policy = HFPolicy.from_pretrained(cached_tiny_model("kimi"))
    kwargs = dict(n=2, seed=11, group_size=2, sampling=SamplingParams(max_new_tokens=12, temperature=1.0))
    local, remote = comparable(run_episodes(UNITCONV, policy, **kwargs)), comparable(run_episodes(UNITCONV, policy, pool=pool, **kwargs))
    # Requests batch differently when envs answer at other moments: log-probs may move in the
    # last float32 bits (HFPolicy's batch invariance holds to 1e-4); everything else is exact.
    logprobs = lambda eps: [lp for e in eps for t in e["turns"] for lp in t.pop("logprobs")]
    assert logprobs(remote) == pytest.approx(logprobs(local), abs=1e-4)
    assert remote == local
    assert all(t["token_ids"] for e in remote for t in e["turns"])  # token ids really compared


def test_in_flight_calls_per_actor_stay_bounded(ray_local, monkeypatch):
    from toolgym.rollouts import ray_pool

    live, peak = [0], [0]
    real = ray_pool._as_future

    def counted(ref):
        fut = real(ref)
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        fut.add_done_callback(lambda _: live.__setitem__(0, live[0] - 1))
        return fut

    monkeypatch.setattr(ray_pool, "_as_future", counted)
    tasks = sample_tasks(UNITCONV, n=40, seed=4)
    with RayEnvPool(actors=1, num_cpus=0.25, max_inflight=1, max_batch=3) as p:
        eps = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=p)
    assert peak[0] == 1  # 40 episodes, batches of 3 at most, yet never two calls at once
    assert all(e.reached_expected_state for e in eps)


@pytest.mark.parametrize("env_id", ["toolgym/retail-v0", "toolgym/banking-v0", "toolgym/shell-v0"])
def test_api_and_shell_envs_run_the_same_on_actors(pool, env_id):
    tasks = sample_tasks(env_id, n=4, seed=2)
    local = run_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks)
    remote = run_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks, pool=pool)
    assert comparable(remote) == comparable(local)


def test_cli_rollout_on_ray_refuses_a_dead_address():
    from typer.testing import CliRunner

    from toolgym.cli import app

    result = CliRunner().invoke(app, ["rollout", "toolgym/unitconv-v0", "--episodes", "2", "--pool", "ray", "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "no Ray cluster answers" in result.output


def test_a_payload_that_does_not_pickle_fails_its_episode_not_the_actor(pool):
    import threading

    pool.bind(UNITCONV, lambda: toolgym.make(UNITCONV))  # a no-op when an earlier test bound it

    async def go():
        env = await pool.acquire()
        with pytest.raises(toolgym.errors.EnvError, match="failed: TypeError: Could not serialize"):
            await pool.reset(env, seed=0, options={"lock": threading.Lock()})  # no pickle for locks
        await pool.close(env, reuse=False)
        again = await pool.acquire()
        obs, _ = await pool.reset(again, seed=0)  # same actor, still serving
        await pool.close(again)
        return obs

    assert asyncio.run(go()).messages
    assert pool.deaths == 0
