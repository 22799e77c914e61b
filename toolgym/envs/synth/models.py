"""Plain data of task synthesis: agents (a system prompt and a tool subset) and rubric items.

A synthesized task's own rubric items are stored in ``Task.metadata["rubric"]`` as plain dicts
in the rubric file's ``Criterion`` form (a task-specific criterion judged by the critic named
``judge``), so tasks stay plain JSONL and ``toolgym.rubrics`` adds them to the rubric a task
is scored with (``toolgym.rubrics.rubric.with_task_criteria``). There is one model of a
criterion, ``toolgym.rubrics.rubric.Criterion``; this layer only writes its dict form.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.types import Task

Source = Literal["llm", "fallback"]


class AgentSpec(BaseModel):
    """An agent to train: what it is told and which tools it gets."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    system_prompt: str = Field(min_length=1)
    tools: list[str] = Field(min_length=1)
    """Names of the tools offered to this agent (a subset of the tool set)."""
    source: Source = "fallback"
    """Who wrote it: the policy, or the deterministic generator."""


class SynthResult(BaseModel):
    """Agents and tasks synthesized from one tool set."""

    model_config = ConfigDict(extra="forbid")

    agents: list[AgentSpec]
    tasks: list[Task]
    fallbacks: int = 0
    """Agents and tasks that came from the deterministic generator after the policy failed."""


JUDGE = "judge"
"""The critic that judges synthesized criteria (``LLMJudge(name="judge")``)."""


def rubric_items(*criteria: str, weight: float = 1.0) -> list[dict[str, Any]]:
    """Criterion dicts (ids ``c1``, ``c2``, ...) for ``Task.metadata["rubric"]``, judged by ``JUDGE``."""
    return [
        {"id": f"c{i}", "description": text, "kind": "core", "weight": weight, "source": {"type": "critic", "critic": JUDGE}}
        for i, text in enumerate(criteria, start=1)
    ]


def rubric_of(task: Task) -> list[str]:
    """What each synthesized criterion of ``task`` asks, in order (empty when it has none)."""
    return [item["description"] for item in task.metadata.get("rubric", [])]
