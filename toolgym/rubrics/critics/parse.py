"""Reading a judge model's answer: find the JSON object, validate it with pydantic.

Models wrap JSON in prose or code fences, so the first decodable object is taken wherever it
sits. Anything else (no object, wrong fields, a score off the scale, a criterion left out) is
a typed ``judge_unparseable`` verdict on that criterion, never a 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from toolgym.envs import safejson
from toolgym.rubrics.critics.base import Judgement
from toolgym.rubrics.rubric import Criterion
from toolgym.rubrics.score import Unscorable

Winner = Literal["A", "B", "tie"]


class JudgementParseError(ValueError):
    """The judge's text holds no valid structured judgement."""


class PointItem(BaseModel):
    """One criterion in a pointwise judgement."""

    model_config = ConfigDict(extra="ignore")

    id: str
    score: Any
    """Checked strictly by ``parse_pointwise``: a JSON number, never a boolean or text."""
    rationale: str = ""


class PointPayload(BaseModel):
    """``{"criteria": [{"id": ..., "score": ..., "rationale": ...}]}``"""

    model_config = ConfigDict(extra="ignore")

    criteria: list[PointItem]


class PairItem(BaseModel):
    """One criterion in a pairwise judgement."""

    model_config = ConfigDict(extra="ignore")

    id: str
    winner: Winner
    rationale: str = ""

    @field_validator("winner", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip(".").lower()
            return {"a": "A", "b": "B", "tie": "tie", "draw": "tie", "equal": "tie"}.get(text, value)
        return value


class PairPayload(BaseModel):
    """``{"criteria": [{"id": ..., "winner": "A" | "B" | "tie", "rationale": ...}]}``"""

    model_config = ConfigDict(extra="ignore")

    criteria: list[PairItem]


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (bare, fenced or inside prose).

    Raises:
        JudgementParseError: no JSON object decodes.
    """
    start = text.find("{")
    while start != -1:
        try:
            value, _ = safejson.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise JudgementParseError(f"no JSON object in the judge's answer: {_snippet(text)!r}")


def _validate(model: type[BaseModel], text: str) -> Any:
    data = extract_json(text)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise JudgementParseError(f"judgement JSON does not fit ({where}: {first['msg']}): {_snippet(text)!r}") from None


def parse_pointwise(text: str, criteria: Sequence[Criterion]) -> dict[str, Judgement]:
    """Per-criterion judgements from a pointwise answer; criteria left out or off their scale
    come back unscorable.

    Raises:
        JudgementParseError: no valid payload at all.
    """
    payload: PointPayload = _validate(PointPayload, text)
    items = {item.id: item for item in payload.criteria}
    out: dict[str, Judgement] = {}
    for c in criteria:
        item = items.get(c.id)
        if item is None:
            out[c.id] = Judgement(unscorable=Unscorable(kind="judge_unparseable", message=f"the judgement has no entry for {c.id!r}"))
        elif not _is_number(item.score):
            # true/false or "0.8" would coerce to a number nobody asked for: unscorable, with why.
            message = f"score for {c.id!r} must be a JSON number, got {type(item.score).__name__} {str(item.score)[:40]!r}"
            out[c.id] = Judgement(rationale=item.rationale, unscorable=Unscorable(kind="judge_unparseable", message=message))
        elif not c.scale.low <= item.score <= c.scale.high:
            message = f"score {item.score} for {c.id!r} is outside [{c.scale.low:g}, {c.scale.high:g}]"
            out[c.id] = Judgement(rationale=item.rationale, unscorable=Unscorable(kind="judge_unparseable", message=message))
        else:
            out[c.id] = Judgement(raw=item.score, rationale=item.rationale)
    return out


def parse_pairwise(text: str, criteria: Sequence[Criterion]) -> dict[str, PairItem | Unscorable]:
    """Per-criterion winners from a pairwise answer; criteria left out come back unscorable.

    Raises:
        JudgementParseError: no valid payload at all.
    """
    payload: PairPayload = _validate(PairPayload, text)
    items = {item.id: item for item in payload.criteria}
    return {
        c.id: items.get(c.id) or Unscorable(kind="judge_unparseable", message=f"the comparison has no entry for {c.id!r}")
        for c in criteria
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def complete(verdicts: dict[str, Any]) -> bool:
    """True when no verdict is unscorable."""
    return not any(isinstance(v, Unscorable) or (isinstance(v, Judgement) and v.unscorable is not None) for v in verdicts.values())


def _snippet(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
