from __future__ import annotations

import gymnasium
import pytest

import toolgym
from toolgym.envs import Limits, ToolEnv, tool
from toolgym.envs.types import StopReason, Task, ToolCall
from toolgym.errors import ConfigError, ResetNeeded


class Counter(ToolEnv):
    """A counter world: the smallest possible ToolEnv."""

    def setup(self, task: Task) -> None:
        self.world = {"n": task.initial_state.get("n", 0)}

    @tool
    def inc(self, by: int = 1) -> int:
        """Increase the counter.

        Args:
            by: Amount to add.
        """
        self.world["n"] += by
        return self.world["n"]


def call_text(env: ToolEnv, tool_name: str, args: dict | None = None) -> str:
    return env.format.render_turn("", [ToolCall(id="x", name=tool_name, arguments=args or {})])


def task(**limits) -> Task:
    return Task(id="t", instruction="count", limits=Limits(**limits))


def test_reset_returns_conversation_and_tools():
    env = Counter(tasks=[task()])
    obs, info = env.reset(seed=1)
    assert [m.role for m in obs.messages] == ["system", "user"]
    assert [t.name for t in obs.tools] == ["inc"]
    assert info["task_id"] == "t"


def test_step_runs_tools_and_answers_terminate():
    env = Counter(tasks=[task()])
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(call_text(env, "inc", {"by": 2}))
    assert obs.messages[0].content == "2" and not (terminated or truncated)
    assert info["tool_calls"] == 1 and info["errors"] == {}
    obs, reward, terminated, truncated, info = env.step("The counter is 2.")
    assert terminated and not truncated and info["stop_reason"] is StopReason.ANSWERED
    assert env.final_answer == "The counter is 2."
    with pytest.raises(ResetNeeded, match="already ended"):
        env.step("again")


def test_turn_budget_truncates():
    env = Counter(tasks=[task(max_turns=2)])
    env.reset(seed=0)
    env.step(call_text(env, "inc"))
    _, _, terminated, truncated, info = env.step(call_text(env, "inc"))
    assert truncated and not terminated and info["stop_reason"] is StopReason.MAX_TURNS


def test_tool_call_budget_refuses_extra_calls_and_truncates():
    env = Counter(tasks=[task(max_tool_calls=2, max_calls_per_turn=5)])
    env.reset(seed=0)
    calls = [ToolCall(id=str(i), name="inc", arguments={}) for i in range(3)]
    obs, _, terminated, truncated, info = env.step(env.format.render_turn("", calls))
    assert [m.error for m in obs.messages] == [None, None, "budget_exceeded"]
    assert truncated and info["stop_reason"] is StopReason.MAX_TOOL_CALLS
    assert env.world["n"] == 2


def test_per_turn_call_cap():
    env = Counter(tasks=[task(max_calls_per_turn=1)])
    env.reset(seed=0)
    calls = [ToolCall(id=str(i), name="inc", arguments={}) for i in range(2)]
    obs, *_ = env.step(env.format.render_turn("", calls))
    assert [m.error for m in obs.messages] == [None, "budget_exceeded"]


def test_task_tool_subset():
    env = toolgym.make("toolgym/unitconv-v0")
    t = env.sample_task(env.np_random).model_copy(update={"tools": ["convert", "store"]})
    obs, _ = env.reset(options={"task": t})
    assert [s.name for s in obs.tools] == ["convert", "store"]
    obs, *_ = env.step(call_text(env, "recall", {"name": "x"}))
    assert obs.messages[0].error == "unknown_tool"


def test_snapshot_restore_forks_identically(unitconv):
    unitconv.reset(seed=3)
    snap = unitconv.snapshot()
    gold = unitconv.task.gold_actions
    outs = []
    for _ in range(4):
        unitconv.restore(snap)
        outs.append([unitconv.step(call_text(unitconv, a.name, a.arguments))[0].model_dump() for a in gold])
        outs[-1].append(unitconv.state_digest())
    assert all(o == outs[0] for o in outs)
    unitconv.restore(snap)
    assert unitconv.state_digest() != outs[0][-1]  # restore really went back


def test_same_seed_same_task_and_digest():
    a, b = toolgym.make("toolgym/unitconv-v0"), toolgym.make("toolgym/unitconv-v0")
    oa, _ = a.reset(seed=42)
    ob, _ = b.reset(seed=42)
    assert oa == ob and a.state_digest() == b.state_digest()
    oc, _ = b.reset(seed=43)
    assert oc != oa


def test_env_without_tasks_explains():
    with pytest.raises(ConfigError, match="needs a task"):
        Counter().reset(seed=0)


def test_gymnasium_make_and_wrappers():
    env = gymnasium.make("toolgym/unitconv-v0")
    obs, _ = env.reset(seed=0)
    assert obs.messages[1].role == "user"
    wrapped = gymnasium.wrappers.RecordEpisodeStatistics(env)
    wrapped.reset(seed=0)
    _, _, terminated, _, info = wrapped.step("I do not know.")
    assert terminated and "episode" in info


def test_bad_action_type_is_a_user_error(unitconv):
    unitconv.reset(seed=0)
    with pytest.raises(TypeError, match="assistant text"):
        unitconv.step(42)
