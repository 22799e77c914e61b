"""LabelPairwiseCritic: every ordered pair of siblings, soft wins from label verdicts, failures unscorable."""

from __future__ import annotations

import asyncio
import math
from itertools import pairwise
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.rubrics import rubric_from_dict
from toolgym.rubrics.critics.label import LabelVerdict
from toolgym.rubrics.critics.label_critic import LabelPairwiseCritic, LabelQuestion

RUBRIC = rubric_from_dict({"name": "r", "criteria": [
    {"id": "good", "description": "Better.", "weight": 1, "source": {"type": "critic", "critic": "self"}},
    {"id": "short", "description": "Shorter.", "weight": 1, "source": {"type": "critic", "critic": "self"},
     "scale": {"low": 0, "high": 10}}]})


def episodes(xs):
    """Stand-in episodes: the readers below only look at ``x``."""
    return [SimpleNamespace(x=x) for x in xs]


def judge(critic, xs):
    return asyncio.run(critic.judge(episodes(xs), RUBRIC.criteria, RUBRIC))


def verdict(p_a: float) -> LabelVerdict:
    return LabelVerdict(logp_a=math.log(p_a), logp_b=math.log1p(-p_a))


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.floats(-5, 5), min_size=2, max_size=6), p=st.floats(0.01, 0.99))
def test_a_judge_that_only_names_a_position_scores_every_sibling_alike(xs, p):
    asked: list[LabelQuestion] = []

    def read(questions):
        asked.extend(questions)
        return [verdict(p) for _ in questions]

    results = judge(LabelPairwiseCritic(read), xs)
    n = len(xs)
    assert len(asked) == 2 * n * (n - 1)  # both orders of every pair, for each of the two criteria
    for r in results:
        assert r.judgements["good"].raw == pytest.approx(0.5) and r.judgements["short"].raw == pytest.approx(5.0)


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(st.floats(-5, 5), min_size=2, max_size=6, unique=True), bias=st.floats(-2, 2))
def test_scores_follow_the_judges_preference_despite_a_position_bias(xs, bias):
    def read(questions):  # prefers the larger x, plus a preference for "A" of ``bias`` nats
        return [verdict(1 / (1 + math.exp(-(q.a.x - q.b.x) - bias))) for q in questions]

    scores = [r.judgements["good"].raw for r in judge(LabelPairwiseCritic(read), xs)]
    ranked = [s for _, s in sorted(zip(xs, scores, strict=True))]
    # Siblings whose x differ by less than float noise (1.5e-144 against 0.0) may come out either way by 1e-17.
    assert all(later >= earlier - 1e-9 for earlier, later in pairwise(ranked)) and all(0.0 < s < 1.0 for s in scores)


@settings(max_examples=50, deadline=None)
@given(xs=st.lists(st.floats(-3, 3), min_size=2, max_size=6), bias=st.floats(-8, 8), missing=st.integers(0, 40))
def test_pair_verdicts_are_the_both_order_verdict_and_a_label_preference_cancels_out(xs, bias, missing):
    def reader(b):
        def read(questions):  # content: the larger x; plus a preference for "A" of ``b`` nats; one question unanswerable
            return [None if i == missing else verdict(1 / (1 + math.exp(-(q.a.x - q.b.x) - b))) for i, q in enumerate(questions)]
        return read

    biased = [r.judgements["good"].raw for r in judge(LabelPairwiseCritic(reader(bias), pair_verdict=True), xs)]
    fair = [r.judgements["good"].raw for r in judge(LabelPairwiseCritic(reader(0.0), pair_verdict=True), xs)]
    if missing >= len(xs) * (len(xs) - 1):  # every question answered: the preference cancels exactly
        assert biased == pytest.approx(fair, abs=1e-9)
        n = len(xs)  # each pair's verdict is sigmoid(2 (x_i - x_j)): both orders' log-odds summed
        expected = [sum(1 / (1 + math.exp(-2 * (x - y))) for j, y in enumerate(xs) if j != i) / (n - 1) for i, x in enumerate(xs)]
        assert fair == pytest.approx(expected, abs=1e-9)


def test_failures_are_unscorable_never_zero():
    def none(questions):
        return [None] * len(questions)

    def broken(questions):
        raise RuntimeError("out of memory")

    def short(questions):
        return [verdict(0.5)]

    for read, kind in [(none, "no_comparisons"), (broken, "judge_error"), (short, "judge_error")]:
        for r in judge(LabelPairwiseCritic(read, name="self"), [1.0, 2.0, 3.0]):
            assert all(j.raw is None and j.unscorable.kind == kind for j in r.judgements.values())
    (alone,) = judge(LabelPairwiseCritic(none), [1.0])
    assert alone.judgements["good"].unscorable.kind == "no_comparisons"
    with pytest.raises(ValueError, match="method must be one of"):
        LabelPairwiseCritic(none, method="elo")
