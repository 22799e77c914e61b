"""Plain data of task synthesis: agents (a system prompt and a tool subset) and rubric items.

Rubric items are stored in ``Task.metadata["rubric"]`` as dicts, so that ``toolgym.rubrics``
can read them without this package and tasks stay plain JSONL.
"""

from __future__ import annotations

from typing import Literal

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


class RubricItem(BaseModel):
    """One criterion a judge checks in an episode."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_\-]{1,64}$")
    criterion: str = Field(min_length=1)
    """What must be true, in one sentence."""
    weight: float = Field(default=1.0, gt=0)


class SynthResult(BaseModel):
    """Agents and tasks synthesized from one tool set."""

    model_config = ConfigDict(extra="forbid")

    agents: list[AgentSpec]
    tasks: list[Task]
    fallbacks: int = 0
    """Agents and tasks that came from the deterministic generator after the policy failed."""


def rubric_of(task: Task) -> list[RubricItem]:
    """The rubric items of a synthesized task (empty when it has none)."""
    return [RubricItem.model_validate(item) for item in task.metadata.get("rubric", [])]
