"""The rubric model: criteria with weights, scales and sources; gates; penalties.

A rubric is data. It is written in YAML or JSON (or built in Python) and validated when it is
loaded, so a typo in a check name or a param fails before any episode is scored, with a
message naming the file and the field.

    name: unitconv
    criteria:
      - id: state
        description: The memory ends exactly as the gold solution leaves it.
        weight: 3
        source: {type: check, check: final_state_matches_gold}
      - id: format
        description: Tool calls are well formed.
        gate: 0.5
        weight: 0
        source: {type: check, check: well_formed_call_rate}
    penalties:
      - {id: long, kind: token_budget, limit: 2000, per_unit: 0.0005, max: 0.3}
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from toolgym.envs.types import Task
from toolgym.errors import ConfigError
from toolgym.rubrics.checks.registry import CHECKS, get_check, register_check, validate_params

CriterionKind = Literal["core", "prescriptive", "task_specific"]
"""core: every task of the environment; prescriptive: how the work is done (style, safety,
efficiency); task_specific: only tasks of the listed families."""
_ID = r"^[a-z][a-z0-9_]{0,63}$"


class _Model(BaseModel):
    # No NaN or infinity anywhere in a rubric ("1e400" in a file included): a gold episode
    # would silently score 0.0. Refused at load, naming the field.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Scale(_Model):
    """The range a criterion's raw value lives in; scores are normalized to [0, 1].

    Checks always use the default 0-1 scale; judges may use others (for example 1-5).
    """

    low: float = 0.0
    high: float = 1.0
    labels: dict[str, str] = Field(default_factory=dict)
    """What some points of the scale mean, shown to judges (for example {"1": "wrong"})."""

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if not self.high > self.low:
            raise ValueError(f"scale.high ({self.high}) must be greater than scale.low ({self.low})")
        return self

    @property
    def is_unit(self) -> bool:
        """Whether this is the default 0-1 scale (the only one checks may use)."""
        return self.low == 0.0 and self.high == 1.0

    def normalize(self, raw: float) -> float:
        """``raw`` mapped to [0, 1].

        Raises:
            ValueError: ``raw`` lies outside [low, high].
        """
        if not self.low <= raw <= self.high:
            raise ValueError(f"value {raw} is outside the scale [{self.low}, {self.high}]")
        return (raw - self.low) / (self.high - self.low)


class CheckSource(_Model):
    """The criterion's value comes from a verifiable check (see ``toolgym.rubrics.checks``)."""

    type: Literal["check"] = "check"
    check: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("check")
    @classmethod
    def _known(cls, name: str) -> str:
        get_check(name)
        return name

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "check" not in info.data:  # the name already failed; its error says why
            return params
        return validate_params(info.data["check"], params, where="params")

    @property
    def label(self) -> str:
        """``check:<name>``, as scores and cost records name the source."""
        return f"check:{self.check}"


class CriticSource(_Model):
    """The criterion's value comes from a critic given at scoring time, by name."""

    type: Literal["critic"] = "critic"
    critic: str = Field(pattern=_ID)
    """Name of the critic (``LLMJudge(name=...)``, ``PairwiseCritic``, ``FunctionCritic``)."""

    @property
    def label(self) -> str:
        """``critic:<name>``, as scores and cost records name the source."""
        return f"critic:{self.critic}"


Source = Annotated[CheckSource | CriticSource, Field(discriminator="type")]


class Criterion(_Model):
    """One thing the rubric judges."""

    id: str = Field(pattern=_ID)
    description: str = Field(min_length=1)
    """What is judged, in words a judge model can apply."""
    kind: CriterionKind = "core"
    weight: float = Field(default=1.0, ge=0.0)
    """Share in the weighted mean; 0 for a pure gate."""
    scale: Scale = Field(default_factory=Scale)
    source: Source
    gate: float | None = Field(default=None, gt=0.0, le=1.0)
    """When set, a normalized value below it sets the total to 0 (a real 0, not unscorable)."""
    families: list[str] | None = None
    """Task families (``task.metadata["family"]``) the criterion applies to; None: all."""

    @model_validator(mode="after")
    def _consistent(self) -> Criterion:
        if isinstance(self.source, CheckSource) and not self.scale.is_unit:
            raise ValueError(f"criterion {self.id!r}: checks score on [0, 1]; remove 'scale' or use a critic source")
        if self.kind == "task_specific" and not self.families:
            raise ValueError(f"criterion {self.id!r}: kind 'task_specific' needs 'families' (the task families it applies to)")
        return self

    def applies_to(self, task: Task) -> bool:
        """Whether the criterion judges ``task`` (by its family)."""
        return self.families is None or task.metadata.get("family") in self.families

    @classmethod
    def from_check(
        cls,
        check: Callable[..., Any] | str,
        *,
        id: str | None = None,
        description: str | None = None,
        params: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Criterion:
        """A criterion scored by a check: a registered name, or a plain function (registered here).

        Args:
            check: The check function or its registered name.
            id: The criterion id (default: the check's name in lower case).
            description: What is judged (default: the first line of the function's docstring).
            params: The check's params.
            **fields: Other ``Criterion`` fields (``weight``, ``gate``, ``kind``, ``families``).

        Raises:
            ConfigError: the function cannot be a check, or its name is taken by another one.

        >>> def short(task, episode) -> bool:
        ...     '''The final answer has at most 80 characters.'''
        ...     return len(episode.final_answer) <= 80
        >>> Criterion.from_check(short, weight=0.5).source.check
        'short'
        """
        if callable(check):
            # Already registered (perhaps under a name of its own choosing): that name; else its __name__.
            known = next((n for n, f in CHECKS.items() if f is check), None)
            name = known if known is not None else getattr(register_check(check), "__name__", "")
            doc = inspect.getdoc(check) or ""
        else:
            name, doc = check, inspect.getdoc(get_check(check)) or ""
        if id is None:
            id = name.lower().lstrip("_")
            if not re.match(_ID, id):
                raise ConfigError(f"check {name!r} gives no usable criterion id; pass one: Criterion.from_check(fn, id='my_check')")
        text = description or (doc.splitlines()[0] if doc else f"The check {name} holds.")
        return cls(id=id, description=text, source=CheckSource(check=name, params=params or {}), **fields)


PenaltyKind = Literal["token_budget", "excess_turns", "excess_calls", "excess_calls_over_gold"]


class Penalty(_Model):
    """A deduction from the total: ``min(max, per_unit * units over limit)``."""

    id: str = Field(pattern=_ID)
    kind: PenaltyKind
    limit: float = Field(ge=0.0)
    """Units allowed before the penalty starts (tokens, turns, calls, calls beyond gold)."""
    per_unit: float = Field(gt=0.0)
    max: float = Field(default=1.0, gt=0.0, le=1.0)


class Rubric(_Model):
    """Criteria, gates and penalties that turn an episode into a ``Score``.

    ``criteria`` also takes plain check functions, each a criterion of weight 1 named after it
    (see ``Criterion.from_check`` for other weights, gates and params).
    """

    name: str = Field(min_length=1)
    description: str = ""
    env_ids: list[str] = Field(default_factory=list)
    """Environments this rubric is written for."""
    criteria: list[Criterion] = Field(min_length=1)
    penalties: list[Penalty] = Field(default_factory=list)
    on_unscorable: Literal["unscorable", "renormalize"] = "unscorable"
    """When a weighted criterion is unscorable: the total is unscorable too, or the other
    criteria are renormalized (the dropped one stays visible in the breakdown)."""

    @field_validator("criteria", mode="before")
    @classmethod
    def _plain_functions(cls, items: Any) -> Any:
        # A plain function in the list is a criterion scored by that check, weight 1.
        if isinstance(items, (list, tuple)):
            return [Criterion.from_check(x) if callable(x) and not isinstance(x, BaseModel) else x for x in items]
        return items

    @field_validator("criteria")
    @classmethod
    def _unique(cls, criteria: list[Criterion]) -> list[Criterion]:
        seen: set[str] = set()
        for c in criteria:
            if c.id in seen:
                raise ValueError(f"criterion id {c.id!r} appears twice; ids must be unique")
            seen.add(c.id)
        return criteria

    def for_task(self, task: Task) -> list[Criterion]:
        """Criteria that apply to ``task`` (by family), in rubric order."""
        return [c for c in self.criteria if c.applies_to(task)]

    def verifiable(self) -> Rubric:
        """A copy without critic-sourced criteria: deterministic, no model needed."""
        kept = [c for c in self.criteria if isinstance(c.source, CheckSource)]
        if not kept:
            raise ValueError(f"rubric {self.name!r} has no check-sourced criterion to keep")
        return self.model_copy(update={"name": f"{self.name}/verifiable", "criteria": kept}, deep=True)

    def with_task_criteria(self, task: Task) -> Rubric:
        """This rubric plus the task's own criteria (``task.metadata["rubric"]``, written by synthesis).

        Each item is a ``Criterion`` in dict form; its id gets the prefix ``task_`` so it cannot
        clash with the rubric's. Returns ``self`` when the task has none, or all are present.

        Raises:
            ConfigError: an item is not a valid criterion (naming the task and the item).
        """
        items = task.metadata.get("rubric") or []
        present = {c.id for c in self.criteria}
        added = []
        for n, item in enumerate(items):
            try:
                criterion = Criterion.model_validate({**item, "id": f"task_{item.get('id', n)}"})
            except (ValidationError, AttributeError, TypeError) as exc:
                raise ConfigError(f"task {task.id!r}: metadata.rubric[{n}] is not a criterion: {exc}") from None
            if criterion.id not in present:
                added.append(criterion)
        if not added:
            return self
        return self.model_copy(update={"criteria": [*self.criteria, *added]}, deep=True)

    def critic_names(self) -> set[str]:
        """Names of the critics this rubric needs."""
        return {c.source.critic for c in self.criteria if isinstance(c.source, CriticSource)}
