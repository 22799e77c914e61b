"""LLMSimulator with deterministic fake policies: validation, retries, cache, typed failures."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from sim_helpers import FakePolicy, act, notes_tools, output

from toolgym.envs import check_env
from toolgym.envs.sim import LLMSimulator, SimCache, SimulatedToolEnv, SimulatorError
from toolgym.envs.types import AssistantMessage, Task, ToolCall
from toolgym.policy import PolicyError, PolicyRequest, PolicyTurn

TASK = Task(id="t", instruction="Use the API.")


def the_call(request: PolicyRequest) -> dict:
    return json.loads(next(m.content for m in request.messages if m.role == "user"))


def plausible(request: PolicyRequest) -> str:
    """A well-behaved simulator policy."""
    call = the_call(request)
    if call["name"] == "get_weather":
        return json.dumps({"output": {"temp_c": len(call["arguments"]["city"]) * 1.5, "sky": "clear"}})
    if call["name"] == "create_note":
        note = {"id": "n1", "title": call["arguments"]["title"], "created_at": "2025-01-01T00:00:00Z", "stars": 2}
        return "```json\n" + json.dumps({"output": note}) + "\n```"
    return json.dumps({"error": f"{call['name']}: no such note"})


def env_with(simulator: LLMSimulator, seed: int = 0, **kwargs) -> SimulatedToolEnv:
    env = SimulatedToolEnv(notes_tools(), simulator, **kwargs)
    env.reset(seed=seed, options={"task": TASK})
    return env


def episode(env: SimulatedToolEnv) -> list[str]:
    calls = [("get_weather", {"city": "Oslo"}), ("create_note", {"title": "x"}), ("get_note", {"note_id": "n1"}), ("get_weather", {"city": "Oslo"})]
    return [act(env, name, **args)[0].content for name, args in calls]


def test_valid_answers_pass_through_and_replays_hit_the_cache():
    policy = FakePolicy(plausible)
    sim = LLMSimulator(policy)
    first = episode(env_with(sim))
    assert json.loads(first[0]) == {"temp_c": 6.0, "sky": "clear"}
    assert first[2].startswith("Error (tool_exception): SimulatedApiError: get_note: no such note")
    asked = len(policy.requests)
    assert asked == 4  # the repeated weather call meets a new state (one more call in the log)
    assert episode(env_with(sim)) == first
    assert len(policy.requests) == asked and sim.stats.cache_hits == 4
    episode(env_with(sim, seed=1))  # another seed, another simulated world: new keys
    assert len(policy.requests) == 2 * asked


def test_a_cache_file_replays_exactly_without_the_policy(tmp_path):
    path = tmp_path / "sim.jsonl"
    first = episode(env_with(LLMSimulator(FakePolicy(plausible), cache=SimCache(path))))

    def refuse(request: PolicyRequest) -> str:
        raise AssertionError("the policy must not be asked on a replay")

    replay = LLMSimulator(FakePolicy(refuse), cache=SimCache(path))
    assert episode(env_with(replay)) == first and len(replay.cache) == 4


def test_a_corrupt_cache_file_is_named(tmp_path):
    path = tmp_path / "sim.jsonl"
    path.write_text('{"key": "k", "answer": {}}\nnot json\n')
    with pytest.raises(SimulatorError, match=r"sim.jsonl:2: not a simulator cache line"):
        SimCache(path)


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("The weather is nice!", "no JSON object found"),
        ('{"output": {"temp_c": "hot", "sky": "clear"}}', "breaks the return schema: at 'temp_c'"),
        ('{"result": 1}', 'exactly one key, "output" or "error"'),
        ('{"output": {"temp_c": 1, "sky": "clear"}', "no JSON object found|not valid JSON"),
    ],
)
def test_broken_output_is_a_counted_simulator_error(reply, problem):
    policy = FakePolicy(lambda r: reply)
    sim = LLMSimulator(policy, attempts=2)
    env = env_with(sim)
    message, info = act(env, "get_weather", city="Oslo")
    assert message.error == "simulator_error"
    assert "in 2 attempt(s)" in message.content
    assert re.search(problem, message.content)
    assert info["errors"] == {"simulator_error": 1} and env.simulator_errors == 1 and sim.stats.errors == 1
    assert len(policy.requests) == 2 and "unusable" in policy.requests[1].messages[-1].content
    assert len(sim.cache) == 0  # failures are not cached: a later run asks again


def test_a_retry_with_the_problem_stated_can_succeed():
    replies = iter(['{"output": {"temp_c": 999, "sky": "clear"}}', '{"output": {"temp_c": 9, "sky": "rain"}}'])
    policy = FakePolicy(lambda r: next(replies))
    env = env_with(LLMSimulator(policy))
    assert output(env, "get_weather", city="Oslo") == {"temp_c": 9, "sky": "rain"}
    assert "999 is greater than the maximum of 45" in policy.requests[1].messages[-1].content


def test_policy_failures_are_simulator_errors():
    failed = PolicyTurn(finish_reason="error", error=PolicyError(kind="endpoint_error", message="connection refused"))
    env = env_with(LLMSimulator(FakePolicy(lambda r: failed)))
    message, _ = act(env, "get_weather", city="Oslo")
    assert message.error == "simulator_error" and "policy failed (endpoint_error): connection refused" in message.content


class SlowPolicy:
    async def generate(self, requests):
        await asyncio.sleep(5)
        return [PolicyTurn(text="{}") for _ in requests]


def test_a_slow_simulator_runs_into_the_deadline():
    env = env_with(LLMSimulator(SlowPolicy()), simulator_timeout_s=0.2)
    message, _ = act(env, "get_weather", city="Oslo")
    assert message.error == "simulator_error" and "did not answer in time" in message.content


def test_the_prompt_carries_schema_state_and_history():
    policy = FakePolicy(plausible)
    task = Task(id="t", instruction="x", initial_state={"data": {"city_of_user": "Oslo"}})
    env = SimulatedToolEnv(notes_tools(), LLMSimulator(policy))
    env.reset(seed=0, options={"task": task})
    output(env, "get_weather", city="Oslo")
    output(env, "create_note", title="trip")
    brief = policy.requests[-1].messages[0].content
    assert '"city_of_user":"Oslo"' in brief and '"tool":"get_weather"' in brief and '"required":["id","title"' in brief


async def test_astep_awaits_the_simulator_on_the_running_loop():
    env = env_with(LLMSimulator(FakePolicy(plausible)))
    call = ToolCall(id="a", name="get_weather", arguments={"city": "Rome"})
    obs, *_ = await env.astep(AssistantMessage(tool_calls=[call]))
    assert json.loads(obs.messages[0].content) == {"temp_c": 6.0, "sky": "clear"}
    obs, *_ = env.step(AssistantMessage(tool_calls=[call.model_copy(update={"id": "b"})]))  # sync step inside a loop
    assert json.loads(obs.messages[0].content)["sky"] == "clear"


def test_passes_the_env_checker():
    check_env(SimulatedToolEnv(notes_tools(), LLMSimulator(FakePolicy(plausible))))
