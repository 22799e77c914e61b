"""A group-wise critic that scores episodes from label verdicts: each one's probability of beating its siblings.

``PairwiseCritic`` turns sampled JSON verdicts into wins; ``LabelPairwiseCritic`` asks the same
question of every ordered pair of a group and reads each answer as a probability
(``toolgym.rubrics.critics.label``), so a comparison always gives a verdict and a soft win:
``wins[a, b] += p(A)``, ``wins[b, a] += p(B)``. Asking both orders makes a judge that only
names a position give every sibling the same score. The verdicts come from a reader the caller
provides (the trainer's forward over its own model, for self-critique), so this module needs
no model and no torch.

Example::

    critic = LabelPairwiseCritic(read, name="self")   # read(questions) -> one LabelVerdict (or None) each
    results = await critic.judge(group, criteria, rubric)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from toolgym.rollouts.episode import Episode
from toolgym.rubrics.critics.base import CriticResult, Judgement
from toolgym.rubrics.critics.label import LabelVerdict
from toolgym.rubrics.critics.ranking import RANKERS, RankMethod
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.rubrics.score import ComponentCost, Unscorable


@dataclass(frozen=True)
class LabelQuestion:
    """Which of ``a`` ("A") and ``b`` ("B") better meets ``criterion`` of ``rubric``."""

    a: Episode
    b: Episode
    criterion: Criterion
    rubric: Rubric


LabelReader = Callable[[Sequence[LabelQuestion]], Sequence[LabelVerdict | None]]
"""Answers questions in order: a verdict each, or None where a question cannot be asked (it does not fit)."""


class LabelPairwiseCritic:
    """Group-wise critic: every ordered pair of siblings asked for a label verdict, soft wins ranked into scores.

    Args:
        read: The judge: label verdicts of questions, in order.
        name: Critic name rubric criteria refer to.
        method: "win_rate" (an episode's mean probability of winning) or "bradley_terry" (on soft wins).
        pair_verdict: Read each pair's two orders as one verdict, ``sigmoid`` of their log-odds summed
            (the verdict ``critic.label_advantage: pair`` trains), instead of one soft win per order. A
            preference for a label or position then cancels exactly instead of squashing every
            probability toward one side.
    """

    group_wise = True

    def __init__(self, read: LabelReader, *, name: str = "label", method: RankMethod = "win_rate", pair_verdict: bool = False):
        if method not in RANKERS:
            raise ValueError(f"method must be one of {sorted(RANKERS)}, got {method!r}")
        self.read, self.name, self.method, self.pair_verdict = read, name, method, pair_verdict

    async def judge(self, episodes: Sequence[Episode], criteria: Sequence[Criterion], rubric: Rubric) -> list[CriticResult]:
        """Score every episode of one group from its label verdicts against each sibling, in both orders."""
        n, start = len(episodes), time.perf_counter()
        if n < 2:
            reason = Unscorable(kind="no_comparisons", message="a group of one episode has nothing to compare with")
            return [CriticResult.failed(criteria, reason, ComponentCost(name=f"critic:{self.name}")) for _ in episodes]
        pairs = list(permutations(range(n), 2))  # both orders of every pair
        questions = [LabelQuestion(episodes[a], episodes[b], c, rubric) for c in criteria for a, b in pairs]
        try:
            verdicts = list(self.read(questions))
            if len(verdicts) != len(questions):
                raise ValueError(f"the reader answered {len(verdicts)} of {len(questions)} questions")
        except Exception as exc:  # the judge's failure: every criterion unscorable, attributed to it, never 0
            reason = Unscorable(kind="judge_error", message=f"{self.name}: {type(exc).__name__}: {exc}")
            cost = ComponentCost(name=f"critic:{self.name}", latency_s=time.perf_counter() - start)
            return [CriticResult.failed(criteria, reason, cost) for _ in episodes]
        judgements: list[dict[str, Judgement]] = [{} for _ in episodes]
        for k, c in enumerate(criteria):
            mine = verdicts[k * len(pairs) : (k + 1) * len(pairs)]
            for i, j in enumerate(self._rank(c, n, pairs, mine)):
                judgements[i][c.id] = j
        latency = (time.perf_counter() - start) / n
        calls = [sum(1 for a, _ in pairs if a == i) * len(criteria) for i in range(n)]  # each question billed to its "A"
        return [CriticResult(judgements=judgements[i], cost=ComponentCost(name=f"critic:{self.name}", calls=calls[i],
                                                                           latency_s=latency)) for i in range(n)]

    def _rank(self, c: Criterion, n: int, pairs: Sequence[tuple[int, int]],
              verdicts: Sequence[LabelVerdict | None]) -> list[Judgement]:
        wins = np.zeros((n, n))  # (N, N) soft wins: wins[i, j] = summed probability that i beat j
        played = np.zeros(n)  # (N,)
        asked = dict(zip(pairs, verdicts, strict=True))
        for (a, b), v in asked.items():
            if v is None:
                continue
            p_a = v.p_a
            other = asked.get((b, a)) if self.pair_verdict else None
            if other is not None:  # both orders, one verdict (it stands for both questions: a soft win each)
                p_a = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, v.log_odds - other.log_odds))))
            wins[a, b] += p_a
            wins[b, a] += 1.0 - p_a
            played[a] += 1
            played[b] += 1
        out = []
        for i, s in enumerate(RANKERS[self.method](wins)):
            if s is None or played[i] == 0:
                out.append(Judgement(unscorable=Unscorable(kind="no_comparisons",
                                                           message=f"no label verdict for {c.id!r} fit the judge's context")))
                continue
            raw = c.scale.low + s * (c.scale.high - c.scale.low)
            out.append(Judgement(raw=raw, rationale=f"{wins[i].sum():.2f} soft wins in {int(played[i])} comparisons ({self.method})"))
        return out

