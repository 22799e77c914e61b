"""The online critic check: how well critic judgements agree with verified outcomes, per iteration.

Where a rubric has a verifiable criterion (a check such as ``final_state_matches_gold``), its
value is ground truth for every critic criterion scored on the same episodes. Two figures per
critic criterion come from one iteration's scored groups:

- **agreement**: over the *verified pairs* (two siblings of one GRPO group whose outcomes
  differ), the share where the critic gives the successful episode the higher value (a tie
  counts half). This is exactly what a pairwise critic is for, and for a pointwise judge that
  is right with probability p on each episode it is p (p² + 2·p(1-p)·½).
- **auc**: ROC AUC of the critic's values against the outcome over all episodes with both.

``RunningCalibration`` keeps the latest scores and re-fits the critic criteria's weights
(``toolgym.rubrics.calibration.fit_weights``); ``reweighted`` puts them into the rubric.

``verified_pairs`` also yields the pairs that critic training turns into prompts whose answer
is known (``toolgym.trainers.critic_loop``). Everything here is pure; nothing calls a model.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from toolgym.rubrics.calibration import WeightFit, fit_weights, outcome_of, roc_auc
from toolgym.rubrics.rubric import Rubric
from toolgym.rubrics.score import Score


@dataclass(frozen=True)
class CriterionCheck:
    """One critic criterion against the verified outcome, over one iteration."""

    criterion: str
    pairs: int
    """Verified pairs where the critic valued both episodes."""
    agreement: float | None
    """Share of those pairs ordered as the outcome orders them (ties count half); None without pairs."""
    episodes: int
    """Episodes with both an outcome and a critic value."""
    auc: float | None
    """ROC AUC of the values against the outcome; None when one class is missing."""
    unscorable: int
    """Episodes with an outcome where the critic could not judge this criterion (counted, never 0)."""


@dataclass(frozen=True)
class VerifiedPair:
    """Two siblings (group-local indices) whose verified outcomes differ, shown as response A and B."""

    a: int
    b: int
    winner: Literal["A", "B"]
    """Which of the two the verified outcome prefers."""


def critic_criteria(scores: Sequence[Score], outcome: str) -> list[str]:
    """Ids of the critic-sourced criteria seen in ``scores`` (the outcome itself excluded), in order of first sight."""
    seen: dict[str, None] = {}
    for s in scores:
        for c in s.criteria:
            if c.id != outcome and c.source.startswith("critic:"):
                seen.setdefault(c.id)
    return list(seen)


def _value(score: Score, criterion: str) -> float | None:
    for c in score.criteria:
        if c.id == criterion and c.applicable and c.unscorable is None:
            return c.value
    return None


def _unscorable(score: Score, criterion: str) -> bool:
    return any(c.id == criterion and c.unscorable is not None for c in score.criteria)


def verified_pairs(group: Sequence[Score], outcome: str, threshold: float = 0.5,
                   rng: random.Random | None = None) -> list[VerifiedPair]:
    """Pairs of siblings whose outcomes differ; with ``rng`` each pair's A/B order is drawn at random
    (so a trained critic cannot learn a position), without it the lower index is A."""
    labels = [outcome_of(s, outcome, threshold) for s in group]
    out = []
    for i, j in combinations(range(len(group)), 2):
        yi, yj = labels[i], labels[j]
        if yi is None or yj is None or yi == yj:
            continue
        a, b = (j, i) if rng is not None and rng.random() < 0.5 else (i, j)
        out.append(VerifiedPair(a=a, b=b, winner="A" if labels[a] else "B"))
    return out


def check_criterion(groups: Sequence[Sequence[Score]], outcome: str, criterion: str,
                    threshold: float = 0.5) -> CriterionCheck:
    """Agreement on verified pairs and AUC of ``criterion`` against ``outcome`` over scored groups."""
    hits = 0.0
    pairs = 0
    labels: list[bool] = []
    values: list[float] = []
    unscorable = 0
    for group in groups:
        for pair in verified_pairs(group, outcome, threshold):
            va, vb = _value(group[pair.a], criterion), _value(group[pair.b], criterion)
            if va is None or vb is None:
                continue
            pairs += 1
            win, lose = (va, vb) if pair.winner == "A" else (vb, va)
            hits += 1.0 if win > lose else 0.5 if win == lose else 0.0
        for s in group:
            y = outcome_of(s, outcome, threshold)
            if y is None:
                continue
            v = _value(s, criterion)
            if v is None:
                unscorable += _unscorable(s, criterion)
                continue
            labels.append(y)
            values.append(v)
    return CriterionCheck(criterion=criterion, pairs=pairs, agreement=hits / pairs if pairs else None,
                          episodes=len(values), auc=roc_auc(labels, values) if values else None, unscorable=unscorable)


def check_critics(groups: Sequence[Sequence[Score]], outcome: str, criteria: Sequence[str] | None = None,
                  threshold: float = 0.5) -> list[CriterionCheck]:
    """``check_criterion`` for each of ``criteria`` (default: every critic-sourced criterion in the scores).

    Raises:
        ValueError: ``outcome`` appears in no score (a misspelt criterion id would otherwise check nothing).
    """
    flat = [s for g in groups for s in g]
    if flat and not any(c.id == outcome for s in flat for c in s.criteria):
        known = sorted({c.id for s in flat for c in s.criteria})
        raise ValueError(f"critic.outcome {outcome!r} is no criterion of the rubric; expected one of {known}")
    chosen = list(criteria) if criteria is not None else critic_criteria(flat, outcome)
    return [check_criterion(groups, outcome, c, threshold) for c in chosen]


class RunningCalibration:
    """The latest ``window`` scores, and the critic-criterion weights that best predict the outcome on them.

    Args:
        outcome: Id of the verifiable criterion taken as truth.
        criteria: The critic criteria whose weights are fitted.
        window: How many recent scores the fit uses (older ones fall out).
        threshold: An outcome value >= threshold is a success.
    """

    def __init__(self, outcome: str, criteria: Sequence[str], window: int = 256, threshold: float = 0.5):
        self.outcome, self.criteria, self.threshold = outcome, list(criteria), threshold
        self.scores: deque[Score] = deque(maxlen=window)

    def add(self, scores: Iterable[Score]) -> None:
        """Append an iteration's scores (the oldest beyond the window are dropped)."""
        self.scores.extend(scores)

    def fit(self) -> WeightFit | None:
        """Non-negative least-squares weights (summing to 1); None until 4 scores have the outcome and every criterion."""
        if not self.criteria:
            return None
        return fit_weights(list(self.scores), self.outcome, self.criteria, "nnls", self.threshold)


def reweighted(rubric: Rubric, weights: dict[str, float]) -> Rubric:
    """``rubric`` with the criteria in ``weights`` sharing their current total weight in those proportions
    (the other criteria, verifiable ones included, keep theirs, so the critic's share of the score is unchanged)."""
    total = sum(c.weight for c in rubric.criteria if c.id in weights)
    norm = sum(weights.values())
    if norm <= 0:
        return rubric
    criteria = [c.model_copy(update={"weight": total * weights[c.id] / norm}) if c.id in weights else c for c in rubric.criteria]
    return rubric.model_copy(update={"criteria": criteria})
