"""``Score``: what a rubric says about one episode, with the breakdown behind the number.

A score is never a silent 0. When something needed to judge the episode failed (the episode's
own infrastructure, a judge call, a check), the affected criterion carries an ``Unscorable``
with its reason, and so does the total when the rubric cannot be computed without it. A gate
that fails is different: the judgement is known and the total is a real 0.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UnscorableKind = Literal[
    "infrastructure",  # the episode itself failed (env, policy, sandbox): episode.failure is set
    "check_error",  # a verifiable check raised (a bug or a broken task, not the model's fault)
    "missing_data",  # the episode lacks what the check needs (no final digest, no test report)
    "judge_error",  # the critic's model or endpoint failed
    "judge_timeout",  # the critic ran past its deadline
    "judge_unparseable",  # the critic answered, but not with a valid structured judgement
    "no_comparisons",  # a pairwise critic had no valid comparison for this episode
    "critic_missing",  # the rubric names a critic that was not given (and skipping is off)
]

TIMING_FIELDS = {"latency_s"}
"""Fields that measure time and so differ between otherwise identical scorings."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Unscorable(_Model):
    """Why a criterion or a total has no value."""

    kind: UnscorableKind
    message: str
    """What failed, for a person reading the breakdown."""


class CriterionScore(_Model):
    """One criterion's result on one episode."""

    id: str
    kind: Literal["core", "prescriptive", "task_specific"]
    source: str
    """Where the value came from: ``check:<name>`` or ``critic:<name>``."""
    weight: float
    applicable: bool = True
    """False when the criterion does not apply (other task family, check returned None)."""
    skipped: bool = False
    """Not applied because its critic was not given (``skip_missing_critics``)."""
    value: float | None = None
    """Normalized to [0, 1]; None when not applicable or unscorable."""
    raw: float | None = None
    """The value on the criterion's own scale (for example 1-5 from a judge)."""
    gate: float | None = None
    """When set, a value below this threshold sets the total to 0."""
    rationale: str = ""
    latency_s: float = 0.0
    unscorable: Unscorable | None = None


class PenaltyScore(_Model):
    """One penalty's deduction on one episode."""

    id: str
    kind: str
    amount: float = Field(ge=0.0)
    """Subtracted from the total (already capped)."""
    detail: str = ""


class ComponentCost(_Model):
    """Cost of one scoring component (a check or a critic) on one episode."""

    name: str
    """``check:<name>`` or ``critic:<name>``."""
    latency_s: float = 0.0
    calls: int = 0
    """Model calls made (cache hits excluded)."""
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Score(_Model):
    """A rubric's judgement of one episode.

    ``total`` is in [0, 1], or None exactly when ``unscorable`` is set.
    """

    episode_id: str
    rubric: str
    total: float | None = None
    unscorable: Unscorable | None = None
    gated_by: str | None = None
    """Id of the gate criterion that set the total to 0, if any."""
    weighted: float | None = None
    """Weighted mean of the criteria before penalties."""
    penalty: float = 0.0
    """Sum of the penalties subtracted."""
    criteria: list[CriterionScore] = Field(default_factory=list)
    penalties: list[PenaltyScore] = Field(default_factory=list)
    components: list[ComponentCost] = Field(default_factory=list)
    latency_s: float = 0.0

    @property
    def scorable(self) -> bool:
        """Whether the score has a total (``unscorable`` is not set)."""
        return self.unscorable is None

    def criterion(self, criterion_id: str) -> CriterionScore:
        """The result of one criterion by id.

        Raises:
            KeyError: no criterion of that id in this score.
        """
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(f"score of {self.episode_id!r} has no criterion {criterion_id!r}; it has {[c.id for c in self.criteria]}")

    def without_timing(self) -> dict:
        """The score as a dict without timing fields: equal for equal judgements."""
        return {k: _drop_timing(v) for k, v in self.model_dump(mode="json").items() if k not in TIMING_FIELDS}

    def fingerprint(self) -> str:
        """Hash of ``without_timing()``: two scorings that agree on everything but time agree here."""
        text = json.dumps(self.without_timing(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _drop_timing(value: object) -> object:
    """``value`` (dumped JSON) without timing fields at any depth."""
    if isinstance(value, dict):
        return {k: _drop_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_drop_timing(v) for v in value]
    return value
