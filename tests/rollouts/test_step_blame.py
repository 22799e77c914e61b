"""If an environment still raises on the model's input, the failure names the turn and the input."""

from __future__ import annotations

from toolgym.envs.env import ToolEnv
from toolgym.envs.types import StopReason, Task
from toolgym.rollouts import ScriptedPolicy, run_episodes


class Fragile(ToolEnv):
    """An env with a bug: a certain answer crashes it (outside any tool, so nothing catches it)."""

    def on_answer(self, content: str):
        if "boom" in content:
            raise KeyError("the env tripped over this answer")
        return super().on_answer(content)


def test_a_crash_on_the_models_input_names_the_turn_and_the_input():
    tasks = [Task(id="t", instruction="go")]
    policy = ScriptedPolicy({}, default=["boom " + "x" * 1000])
    [episode] = run_episodes(lambda: Fragile(tasks=tasks), policy, tasks=tasks, env_retries=0)
    assert episode.stop_reason is StopReason.ENV_ERROR
    message = episode.failure.message
    assert "step of turn 1 raised KeyError" in message and "model input: 'boom xxx" in message
    assert len(message) <= 500
