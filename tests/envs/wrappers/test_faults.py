"""FaultInjection: seeded, recorded, typed faults; same seed, same faults."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError

import toolgym
from toolgym.envs import check_env
from toolgym.envs.sim import SimulatedToolEnv
from toolgym.envs.types import AssistantMessage, Limits, Task, ToolCall
from toolgym.envs.wrappers import FaultConfig, FaultInjection, FaultSpec
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks

LONG = Task(id="long", instruction="Calculate.", limits=Limits(max_turns=500, max_tool_calls=500))


def faulty(seed: int = 0, **spec) -> FaultInjection:
    env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(default=FaultSpec(**spec)))
    env.reset(seed=seed, options={"task": LONG})
    return env


def calls(*pairs: tuple[str, dict]) -> AssistantMessage:
    return AssistantMessage(tool_calls=[ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(pairs)])


STORE = ("store", {"name": "x", "value": 2.0})
CONVERT = ("convert", {"value": 1.0, "from_unit": "km", "to_unit": "m"})


def pattern(env: FaultInjection, n: int = 40) -> list[str | None]:
    kinds = []
    for i in range(n):
        obs, *_ = env.step(AssistantMessage(tool_calls=[ToolCall(id=f"k{i}", name="calculate", arguments={"expression": "1+1"})]))
        kinds.append(obs.messages[0].error)
        if env.stop_reason is not None:
            break
    return kinds


def test_same_seed_same_faults_other_seed_other_faults():
    spec = {"error": 0.2, "timeout": 0.1, "rate_limit": 0.1}
    a = pattern(faulty(3, **spec))
    assert a == pattern(faulty(3, **spec))
    assert a != pattern(faulty(4, **spec))
    assert {"injected_fault", "timeout", "rate_limited", None} == set(a)


def test_unseeded_resets_after_a_seeded_one_repeat_like_gymnasium():
    def run() -> list[list[str | None]]:
        env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(default=FaultSpec(error=0.5)))
        env.reset(seed=7, options={"task": LONG})
        out = [pattern(env)]
        for _ in range(2):
            env.reset(options={"task": LONG})
            out.append(pattern(env))
        return out

    a = run()
    assert a == run() and a[1] != a[0] and a[2] != a[1]


def test_rates_are_honoured():
    env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), {"default": {"error": 0.3}})
    failed = total = 0
    for seed in range(5):
        env.reset(seed=seed, options={"task": LONG})
        kinds = pattern(env, 40)
        failed += kinds.count("injected_fault")
        total += len(kinds)
    assert 0.2 < failed / total < 0.4


@pytest.mark.parametrize(
    "kind, error, ran",
    [("error", "injected_fault", False), ("timeout", "timeout", False), ("rate_limit", "rate_limited", False), ("malformed", "injected_fault", True)],
)
def test_each_fault_is_typed_and_recorded(kind, error, ran):
    env = faulty(**{kind: 1.0})
    obs, *_, info = env.step(calls(STORE))
    assert obs.messages[0].error == error
    assert info["errors"] == {error: 1}
    assert [(f["call_id"], f["tool"], f["kind"]) for f in info["faults"]] == [("c0", "store", kind)]
    assert ("x" in env.unwrapped.world["memory"]) is ran  # a malformed response still took effect


def test_partial_responses_lose_fields_but_look_fine():
    env = faulty(partial=1.0)
    obs, *_, info = env.step(calls(CONVERT))
    assert obs.messages[0].error is None and info["faults"][0]["kind"] == "partial"
    assert len(json.loads(obs.messages[0].content)) < 2


def test_per_tool_rate_limit_counts_calls_in_a_turn():
    env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(tools={"convert": FaultSpec(max_calls_per_turn=1)}))
    env.reset(seed=0)
    obs, *_ = env.step(calls(CONVERT, CONVERT, STORE))
    assert [m.error for m in obs.messages] == [None, "rate_limited", None]
    obs, *_ = env.step(calls(CONVERT))
    assert obs.messages[0].error is None  # a new turn, a new window


def test_latency_is_added_and_recorded():
    env = faulty(latency_s=(0.05, 0.05))
    start = time.perf_counter()
    obs, *_, info = env.step(calls(CONVERT))
    assert time.perf_counter() - start >= 0.05 and obs.messages[0].error is None
    assert info["faults"] == [{"call_id": "c0", "tool": "convert", "kind": "latency", "latency_s": 0.05, "detail": ""}]


async def test_astep_injects_the_same_faults():
    spec = {"error": 0.5, "latency_s": (0.0, 0.01)}
    sync_env, async_env = faulty(5, **spec), faulty(5, **spec)
    for i in range(10):
        action = calls(("calculate", {"expression": f"{i}+1"}))
        a, *_, info_a = sync_env.step(action)
        b, *_, info_b = await async_env.astep(action)
        assert a == b and info_a["faults"] == info_b["faults"]


def test_restore_repeats_the_faults():
    env = faulty(1, error=0.5)
    snap = env.snapshot()
    first = pattern(env, 10)
    env.restore(snap)
    assert pattern(env, 10) == first


def test_a_retried_call_draws_afresh_even_with_the_same_call_id():
    # Models writing OpenAI-style calls often reuse "call_0" every turn; a retry must still be able to succeed.
    for seed in range(4):
        env = faulty(seed, error=0.5)
        kinds = {env.step(calls(STORE))[0].messages[0].error for _ in range(12)}
        assert kinds == {None, "injected_fault"}, (seed, kinds)


def test_restore_mid_episode_repeats_the_faults():
    env = faulty(2, error=0.5)
    pattern(env, 3)
    snap = env.snapshot()
    first = [env.step(calls(STORE))[0].messages[0].error for _ in range(10)]
    env.restore(snap)
    assert [env.step(calls(STORE))[0].messages[0].error for _ in range(10)] == first


def test_bad_configs_are_refused():
    with pytest.raises(ValidationError, match="add up to 1.5"):
        FaultSpec(error=0.8, timeout=0.7)
    with pytest.raises(ValidationError, match="latency_s"):
        FaultSpec(latency_s=(0.5, 0.1))


def test_the_wrapped_env_passes_the_checker():
    check_env(FaultInjection(toolgym.make("toolgym/unitconv-v0"), {"default": {"error": 0.3, "malformed": 0.2, "partial": 0.2}}))


def test_faults_compose_with_simulated_tools():
    tool = {"type": "function", "function": {"name": "get_quote", "description": "A stock quote.",
            "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}}
    env = FaultInjection(SimulatedToolEnv([tool]), {"default": {"error": 0.5}})
    check_env(env)
    env.reset(seed=2)
    kinds = {env.step(calls(("get_quote", {"symbol": s})))[0].messages[0].error for s in "ABCDEFGH"}
    assert kinds == {None, "injected_fault"}


def test_episodes_record_the_injected_faults():
    tasks = sample_tasks("toolgym/unitconv-v0", n=6, seed=0)
    episodes = run_episodes(lambda: FaultInjection(toolgym.make("toolgym/unitconv-v0"), {"default": {"error": 0.3, "rate_limit": 0.2}}),
                            ScriptedPolicy.gold(tasks), tasks=tasks)
    counts = [e.error_counts() for e in episodes]
    assert all(set(c) <= {"injected_fault", "rate_limited"} for c in counts)
    assert sum(sum(c.values()) for c in counts) > 0 and all(e.scorable for e in episodes)
