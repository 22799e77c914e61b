"""Penalties: deductions for spending too much (tokens, turns, calls). One function per kind.

Each function measures how many units the episode used; the rubric's ``Penalty`` turns units
over its limit into an amount. A measure of None means the episode does not record what the
penalty needs (for example no token ids from an HTTP policy): the penalty is then not applied,
and the breakdown says so.
"""

from __future__ import annotations

from collections.abc import Callable

from toolgym.rollouts.episode import Episode
from toolgym.rubrics.rubric import Penalty
from toolgym.rubrics.score import PenaltyScore
from toolgym.rubrics.trajectory import attempted_calls, generated_tokens


def _excess_calls_over_gold(episode: Episode) -> float | None:
    if not episode.task.gold_actions:
        return None
    return float(attempted_calls(episode) - len(episode.task.gold_actions))


MEASURES: dict[str, Callable[[Episode], float | None]] = {
    "token_budget": lambda ep: None if (n := generated_tokens(ep)) is None else float(n),
    "excess_turns": lambda ep: float(len(ep.turns)),
    "excess_calls": lambda ep: float(attempted_calls(ep)),
    "excess_calls_over_gold": _excess_calls_over_gold,
}
"""Units each penalty kind counts: generated tokens, turns, attempted calls, calls beyond gold."""


def apply_penalty(penalty: Penalty, episode: Episode) -> PenaltyScore:
    """The deduction ``penalty`` makes on ``episode`` (0 when under the limit or not measurable)."""
    used = MEASURES[penalty.kind](episode)
    if used is None:
        return PenaltyScore(id=penalty.id, kind=penalty.kind, amount=0.0, detail="not measured (the episode lacks the data)")
    over = max(0.0, used - penalty.limit)
    amount = min(penalty.max, over * penalty.per_unit)
    return PenaltyScore(id=penalty.id, kind=penalty.kind, amount=amount, detail=f"{used:g} used, limit {penalty.limit:g}")
