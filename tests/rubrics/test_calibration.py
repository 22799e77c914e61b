import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.rubrics.calibration import agreement, calibrate, fit_weights, roc_auc
from toolgym.rubrics.score import CriterionScore, Score, Unscorable


def score(i, outcome, **values):
    criteria = [CriterionScore(id="state", kind="core", source="check:final_state_matches_gold", weight=1, value=outcome)]
    for cid, v in values.items():
        reason = Unscorable(kind="judge_timeout", message="slow") if v == "x" else None
        criteria.append(CriterionScore(id=cid, kind="prescriptive", source="critic:judge", weight=1, value=None if reason else v, unscorable=reason))
    return Score(episode_id=str(i), rubric="r", criteria=criteria, total=outcome)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])), min_size=2, max_size=40))
def test_auc_matches_scikit_learn(pairs):
    from sklearn.metrics import roc_auc_score

    labels = [p[0] for p in pairs]
    values = [p[1] for p in pairs]
    ours = roc_auc(labels, values)
    if len(set(labels)) < 2:
        assert ours is None
    else:
        assert ours == pytest.approx(roc_auc_score(labels, values))


def test_agreement_counts_unscorable_and_measures_accuracy():
    scores = [score(0, 1.0, judge=0.9), score(1, 1.0, judge=0.4), score(2, 0.0, judge=0.1), score(3, 0.0, judge="x")]
    a = agreement(scores, "state", "judge")
    assert (a.n, a.unscorable) == (3, 1)
    assert a.accuracy == pytest.approx(2 / 3)
    assert a.auc == 1.0
    assert a.mean_if_success == pytest.approx(0.65)
    assert a.source == "critic:judge"


def test_nnls_fit_finds_the_informative_criterion():
    rng = np.random.default_rng(0)
    scores = []
    for i in range(200):
        y = float(rng.random() < 0.5)
        good = float(np.clip(y * 0.8 + rng.normal(0.1, 0.1), 0, 1))
        noise = float(rng.random())
        scores.append(score(i, y, good=good, noise=noise))
    fit = fit_weights(scores, "state", ["good", "noise"])
    assert fit.weights["good"] > 0.8
    assert sum(fit.weights.values()) == pytest.approx(1.0)
    assert fit.cv_auc > 0.95 and fit.auc > 0.95
    logistic = fit_weights(scores, "state", ["good", "noise"], method="logistic")
    assert logistic.weights["good"] > 0.8 and logistic.coefficients["good"] > 0


def test_calibrate_defaults_to_critic_criteria_and_reports_totals():
    scores = [score(i, float(i % 2), judge=0.2 + 0.6 * (i % 2)) for i in range(20)]
    report = calibrate(scores, "state")
    assert [a.criterion for a in report.agreement] == ["judge"]
    assert report.success_rate == 0.5
    assert report.total_auc == 1.0
    assert report.fit is not None and report.fit.n == 20


def test_too_little_data_gives_no_fit():
    assert fit_weights([score(0, 1.0, judge=1.0)], "state", ["judge"]) is None
