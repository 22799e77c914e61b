"""``Episode``: the record of one rollout, complete enough to score and to train on.

It keeps the conversation, what the policy generated token by token (ids, behaviour
log-probs, the prompt each turn was generated from), why the episode stopped, the final
state digest, error counts and timings. It is what rubrics score and trainers consume.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.types import Message, StopReason, Task, ToolSpec


class TurnRecord(BaseModel):
    """One assistant turn and what the environment answered."""

    model_config = ConfigDict(extra="forbid")

    text: str
    """Exactly what the policy produced."""
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: Literal["stop", "length", "error"] = "stop"
    tool_calls: int = 0
    """Calls parsed from this turn."""
    errors: dict[str, int] = Field(default_factory=dict)
    """Error observations this turn caused, by kind (parse_error, unknown_tool, ...)."""
    faults: list[dict[str, Any]] = Field(default_factory=list)
    """Faults a fault-injection wrapper put into this turn (``info["faults"]``)."""
    observation_start: int = 0
    """Index in ``Episode.messages`` of the first message this turn's step added."""
    reward: float = 0.0
    env_s: float = 0.0
    policy_s: float = 0.0


class Failure(BaseModel):
    """An infrastructure failure attributed to its boundary (never the model's fault)."""

    model_config = ConfigDict(extra="forbid")

    boundary: Literal["env", "policy", "simulator", "judge", "sandbox"]
    kind: str
    message: str
    attempts: int = 1


class Episode(BaseModel):
    """A finished rollout."""

    model_config = ConfigDict(extra="forbid")

    id: str
    env_id: str
    task: Task
    seed: int
    """Seed ``reset`` was called with; together with the policy seed it fixes the episode."""
    tools: list[ToolSpec] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    turns: list[TurnRecord] = Field(default_factory=list)
    stop_reason: StopReason
    reward: float = 0.0
    """The environment's own outcome reward (rubrics give the full score)."""
    final_answer: str = ""
    final_state_digest: str | None = None
    failure: Failure | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    wall_s: float = 0.0
    group: str | None = None
    """Episodes sharing a group id start from the same state (GRPO siblings)."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def terminated(self) -> bool:
        return self.stop_reason.terminated

    @property
    def truncated(self) -> bool:
        return self.stop_reason.truncated

    @property
    def scorable(self) -> bool:
        """False when infrastructure failed: such an episode must not be given a reward of 0."""
        return self.failure is None

    @property
    def reached_expected_state(self) -> bool | None:
        """Whether the final digest equals the task's expected digest (None when unknown)."""
        expected = self.task.expected.state_digest
        if expected is None or self.final_state_digest is None:
            return None
        return expected == self.final_state_digest

    def error_counts(self) -> dict[str, int]:
        """Error observations of the whole episode by kind."""
        total: dict[str, int] = {}
        for turn in self.turns:
            for kind, n in turn.errors.items():
                total[kind] = total.get(kind, 0) + n
        return total
