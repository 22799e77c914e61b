"""Composition: per-criterion results -> one total, through gates, a weighted mean and penalties.

Pure function of its inputs, so the rules are easy to read and test:

1. A gate whose value is below its threshold sets the total to 0: a real, known 0.
2. Otherwise a gate that is unscorable makes the total unscorable (the gate cannot be decided).
3. The weighted mean runs over applicable criteria with weight > 0. If one is unscorable, the
   total is unscorable (``on_unscorable="unscorable"``) or it is dropped and the rest
   renormalized (``"renormalize"``).
4. Penalties are subtracted and the total is clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from toolgym.rubrics.score import ComponentCost, CriterionScore, PenaltyScore, Score, Unscorable, UnscorableKind


def compose(
    rubric: str,
    episode_id: str,
    criteria: Sequence[CriterionScore],
    penalties: Sequence[PenaltyScore] = (),
    components: Sequence[ComponentCost] = (),
    on_unscorable: Literal["unscorable", "renormalize"] = "unscorable",
) -> Score:
    """Combine per-criterion results into a ``Score`` (see the module docstring for the rules)."""
    base = Score(
        episode_id=episode_id,
        rubric=rubric,
        criteria=list(criteria),
        penalties=list(penalties),
        components=list(components),
        latency_s=sum(c.latency_s for c in components),
    )
    live = [c for c in criteria if c.applicable]
    gates = [c for c in live if c.gate is not None]
    failed = [c for c in gates if c.gate is not None and c.value is not None and c.value < c.gate]
    if failed:
        return base.model_copy(update={"total": 0.0, "gated_by": failed[0].id})
    undecided = [c for c in gates if c.unscorable is not None]
    if undecided:
        return base.model_copy(update={"unscorable": _because(undecided, "gate")})
    weighted = [c for c in live if c.weight > 0]
    broken = [c for c in weighted if c.unscorable is not None]
    if broken and on_unscorable == "unscorable":
        return base.model_copy(update={"unscorable": _because(broken, "criterion")})
    usable = [c for c in weighted if c.unscorable is None and c.value is not None]
    if not usable:
        if weighted or not gates:
            reason = Unscorable(kind=_first_kind(broken), message="no weighted criterion could be scored for this task")
            return base.model_copy(update={"unscorable": reason})
        mean = 1.0  # a rubric of gates only: passing them all is full marks
    else:
        mean = sum(c.weight * (c.value or 0.0) for c in usable) / sum(c.weight for c in usable)  # value is set: filtered above
    penalty = sum(p.amount for p in penalties)
    total = min(1.0, max(0.0, mean - penalty))
    return base.model_copy(update={"total": total, "weighted": mean, "penalty": penalty})


def _because(criteria: Sequence[CriterionScore], what: str) -> Unscorable:
    first = criteria[0].unscorable or Unscorable(kind="missing_data", message="no reason recorded")
    names = ", ".join(c.id for c in criteria)
    return Unscorable(kind=first.kind, message=f"{what} {names} unscorable: {first.message}")


def _first_kind(criteria: Sequence[CriterionScore]) -> UnscorableKind:
    for c in criteria:
        if c.unscorable is not None:
            return c.unscorable.kind
    return "missing_data"
