"""How the loop attributes infrastructure trouble that environments report rather than raise."""

from __future__ import annotations

import toolgym
from toolgym.envs.sim import SchemaSimulator, SimulatedToolEnv, SimulatorError
from toolgym.envs.types import StopReason, Task
from toolgym.envs.wrappers.faults import FaultConfig, FaultInjection, FaultSpec
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks

RECALL = '<tool_call>{"name": "recall", "arguments": {"name": "x"}}</tool_call>'


def test_wrapped_envs_run_and_faults_land_in_turn_records():
    def factory():
        return FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(default=FaultSpec(error=1.0)))

    episodes = run_episodes(factory, ScriptedPolicy({}, default=[RECALL, "gave up"]), n=3)
    for e in episodes:
        assert e.turns[0].faults and e.turns[0].faults[0]["kind"] == "error"
        assert e.turns[0].errors == {"injected_fault": 1}
        assert e.scorable and e.stop_reason is StopReason.ANSWERED  # deliberate faults stay scorable


class BrokenSimulator(SchemaSimulator):
    """A simulator whose backend only ever produces unusable output."""

    def simulate(self, tool, arguments, state):
        raise SimulatorError("backend returned garbage")

    async def asimulate(self, tool, arguments, state):
        raise SimulatorError("backend returned garbage")


def test_simulator_errors_make_the_episode_unscorable():
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look up.", "parameters": {"type": "object", "properties": {}}}}]
    task = Task(id="t", instruction="look it up")

    def factory():
        return SimulatedToolEnv(tools, BrokenSimulator(), tasks=[task])

    episodes = run_episodes(factory, ScriptedPolicy({}, default=['<tool_call>{"name": "lookup", "arguments": {}}</tool_call>', "done"]), n=1)
    (episode,) = episodes
    assert episode.turns[0].errors.get("simulator_error") == 1
    assert not episode.scorable and episode.failure.boundary == "simulator"


def test_env_error_stop_is_a_failure():
    class Dying(type(toolgym.make("toolgym/unitconv-v0"))):
        def on_answer(self, content):
            return [], StopReason.ENV_ERROR

    tasks = sample_tasks("toolgym/unitconv-v0", 1)
    (episode,) = run_episodes(Dying, ScriptedPolicy({}, default=["hi"]), tasks=tasks)
    assert episode.stop_reason is StopReason.ENV_ERROR and episode.failure.boundary == "env" and episode.reward == 0.0


def test_context_overflow_truncates_instead_of_failing():
    from toolgym.rollouts import PolicyError, PolicyTurn

    class Overflowing:
        async def generate(self, requests):
            return [PolicyTurn(finish_reason="error", error=PolicyError(kind="context_overflow", message="too long")) for _ in requests]

    (episode,) = run_episodes("toolgym/unitconv-v0", Overflowing(), n=1)
    assert episode.stop_reason is StopReason.CONTEXT_LIMIT and episode.truncated and episode.scorable
