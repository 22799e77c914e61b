"""Answer checks and critics see the answer, not the reasoning; a check may opt in to reasoning."""

from __future__ import annotations

from rubric_helpers import synthetic

import toolgym
from toolgym.envs.types import AssistantMessage, Expected, Task
from toolgym.rubrics.checks import answer_matches, required_outputs_present
from toolgym.rubrics.critics.transcript import render_transcript


def test_checks_read_the_answer_unless_asked_for_reasoning():
    task = Task(id="t", instruction="q", expected=Expected(answer="Paris", outputs=["lyon"]))
    episode = synthetic([AssistantMessage(content="Paris", reasoning="Not Lyon, surely.")], task=task, final_answer="Paris")
    assert answer_matches(task, episode) == 1.0
    assert required_outputs_present(task, episode) == 0.0  # "Lyon" is only in the reasoning
    assert required_outputs_present(task, episode, include_reasoning=True) == 1.0
    assert answer_matches(task, episode, include_reasoning=True) == 0.0  # the reasoning is now part of the text
    assert "Not Lyon" not in render_transcript(episode)


def test_an_env_episode_scores_without_its_think_text():
    env = toolgym.make("toolgym/unitconv-v0", tool_format="hermes")
    env.reset(seed=0)
    env.step("<think>The answer might be 999.</think>I cannot tell.")
    base = env.unwrapped
    task = base.task.model_copy(update={"expected": Expected(outputs=["999"])})
    episode = synthetic(list(base.messages), task=task, final_answer=base.final_answer)
    assert base.final_answer == "I cannot tell."
    assert required_outputs_present(task, episode) == 0.0
    assert required_outputs_present(task, episode, include_reasoning=True) == 1.0
