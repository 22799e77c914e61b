"""The tool-call seam (``call_tool`` + ``ToolCallWrapper``), what a step reports to the loop, and
worlds that save, load and hash themselves (``WorldState``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs import ToolEnv, tool
from toolgym.envs.dispatch import CallContext, error_result
from toolgym.envs.types import AssistantMessage, Limits, Task, ToolCall, ToolResult
from toolgym.envs.world import WorldState
from toolgym.envs.wrappers import FaultInjection, ToolCallWrapper

UNITCONV = "toolgym/unitconv-v0"
LONG = Task(id="long", instruction="Count.", limits=Limits(max_turns=200, max_tool_calls=400, max_calls_per_turn=4))


class Tally(WorldState):
    """A world object with its own save/load/digest (no env world hook overridden)."""

    def __init__(self) -> None:
        self.items: list[int] = []

    def save(self) -> list[int]:
        return list(self.items)

    def load(self, saved: list[int]) -> None:
        self.items = list(saved)

    def digest(self) -> str:
        return ",".join(map(str, self.items))


class TallyEnv(ToolEnv):
    """Overrides only ``setup`` and its tools; the world forks and hashes itself."""

    def setup(self, task: Task) -> None:
        self.world = Tally()

    @tool
    def add(self, n: int) -> int:
        """Append a number; numbers over 100 are refused after the write (the call rolls back).

        Args:
            n: The number.
        """
        self.world.items.append(n)
        if n > 100:
            raise ValueError("too big")
        return len(self.world.items)


def turn(*numbers: int) -> AssistantMessage:
    return AssistantMessage(tool_calls=[ToolCall(id=f"c{i}", name="add", arguments={"n": n}) for i, n in enumerate(numbers)])


class Log(ToolCallWrapper):
    """Records what every call saw, then passes it on."""

    def __init__(self, env, name: str, seen: list):
        super().__init__(env)
        self.name, self.seen = name, seen

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult:
        self.seen.append((self.name, call.id, ctx.index, ctx.position, len(ctx.calls)))
        return await super().call_tool(call, ctx)


class Refuse(ToolCallWrapper):
    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult:
        ctx.faults.append({"call_id": call.id, "kind": "refused"})
        return error_result(call, "policy_violation", "refused")


@settings(max_examples=25, deadline=None)
@given(turns=st.lists(st.lists(st.integers(0, 150), min_size=1, max_size=4), min_size=1, max_size=6), cut=st.integers(0, 6))
def test_a_world_state_object_forks_rolls_back_and_hashes_itself(turns, cut):
    env, expected = TallyEnv(), []
    env.reset(seed=0, options={"task": LONG})
    snap, at_cut = env.snapshot(), env.state_digest()
    for i, numbers in enumerate(turns):
        if i == cut:
            snap, at_cut = env.snapshot(), env.state_digest()
        env.step(turn(*numbers))
        expected += [n for n in numbers if n <= 100]  # refused writes were rolled back
        assert env.state_digest() == ",".join(map(str, expected))
    sibling = TallyEnv()
    sibling.restore(snap)
    assert sibling.state_digest() == at_cut and snap.world == [int(x) for x in at_cut.split(",") if x]


def test_wrappers_nest_and_every_call_goes_through_the_outermost():
    seen: list = []
    env = Log(Log(TallyEnv(), "inner", seen), "outer", seen)
    env.reset(seed=0, options={"task": LONG})
    env.step(turn(1, 2))
    # outer sees each call first, then inner; the context moves with the turn's calls
    assert seen == [("outer", "c0", 0, 2, 2), ("inner", "c0", 0, 2, 2), ("outer", "c1", 1, 2, 2), ("inner", "c1", 1, 2, 2)]
    env.step(turn(3))
    assert seen[-1] == ("inner", "c0", 0, 5, 1)  # 2 + assistant + 2 tool messages before the second turn


def test_a_wrapper_decides_the_result_and_reports_faults_in_info():
    env = Refuse(TallyEnv())
    env.reset(seed=0, options={"task": LONG})
    obs, _, _, _, info = env.step(turn(1))
    assert obs.messages[0].error == "policy_violation" and info["faults"] == [{"call_id": "c0", "kind": "refused"}]
    assert env.state_digest() == ""  # the call never reached the env


def test_only_tool_envs_and_tool_call_wrappers_can_be_wrapped():
    import gymnasium

    with pytest.raises(TypeError, match="ToolEnv or another ToolCallWrapper"):
        Refuse(gymnasium.make("CartPole-v1"))


def test_a_step_reports_what_the_loop_keeps():
    env = toolgym.make(UNITCONV)
    obs, info = env.reset(seed=3)
    assert info["task"].id == info["task_id"]
    transcript = list(obs.messages)
    for text in ['<tool_call>{"name": "store", "arguments": {"name": "x", "value": 2}}</tool_call>', "x is 2"]:
        obs, _, _, _, info = env.step(text)
        transcript += [info["assistant"], *obs.messages]
    assert transcript == env.messages  # the loop's transcript is the env's own
    assert info["final_answer"] == "x is 2" and info["stop_reason"] is not None and info["faults"] == []


def test_fault_injection_overrides_one_method_and_keeps_its_seeded_patterns():
    members = [n for n, v in vars(FaultInjection).items() if callable(v) and n != "__init__"]
    assert members == ["call_tool"]
    env = FaultInjection(toolgym.make(UNITCONV), {"default": {"error": 0.5}})
    env.reset(seed=11, options={"task": LONG})
    call = '<tool_call>{"name": "calculate", "arguments": {"expression": "1+1"}}</tool_call>'
    first = [env.step(call)[0].messages[0].error for _ in range(8)]
    env.reset(seed=11, options={"task": LONG})
    assert [env.step(call)[0].messages[0].error for _ in range(8)] == first and len(set(first)) == 2
