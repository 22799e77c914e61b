"""Calibration: do critic scores agree with verifiable outcomes, and which weights predict them?

Where an episode has both a verifiable outcome (say ``final_state_matches_gold``) and critic
scores, the outcome is ground truth for the critic. ``calibrate`` reports, per criterion, the
accuracy of thresholding it and its ROC AUC against the outcome, then fits non-negative
criterion weights (or a logistic regression) that best predict success, with a cross-validated
AUC so the fit is not judged on the data it was fitted to. scipy and scikit-learn load lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from toolgym.rubrics.score import Score

FitMethod = Literal["nnls", "logistic"]


class CriterionAgreement(BaseModel):
    """How well one criterion predicts the verifiable outcome."""

    model_config = ConfigDict(extra="forbid")

    criterion: str
    source: str
    n: int
    """Episodes with both an outcome and a value of this criterion."""
    unscorable: int
    """Episodes with an outcome where this criterion was unscorable."""
    accuracy: float | None = None
    """Share of episodes where (value >= threshold) equals the outcome."""
    auc: float | None = None
    """ROC AUC of the value against the outcome (None when only one class is present)."""
    mean_if_success: float | None = None
    mean_if_failure: float | None = None


class WeightFit(BaseModel):
    """Criterion weights fitted to predict the outcome."""

    model_config = ConfigDict(extra="forbid")

    method: FitMethod
    criteria: list[str]
    weights: dict[str, float]
    """Non-negative, summing to 1: usable as rubric weights."""
    coefficients: dict[str, float] = Field(default_factory=dict)
    """Raw coefficients of the fit (logistic: may be negative)."""
    n: int
    auc: float | None = None
    """In-sample AUC of the weighted mean."""
    cv_auc: float | None = None
    """AUC of out-of-fold predictions (k-fold by episode order)."""


class CalibrationReport(BaseModel):
    """Agreement of every criterion with the outcome, and a weight fit."""

    model_config = ConfigDict(extra="forbid")

    outcome: str
    threshold: float
    episodes: int
    with_outcome: int
    success_rate: float | None
    agreement: list[CriterionAgreement]
    fit: WeightFit | None = None
    total_auc: float | None = None
    """AUC of the rubric totals (scorable episodes) against the outcome."""


def roc_auc(labels: Sequence[bool], values: Sequence[float]) -> float | None:
    """Probability that a random success outranks a random failure (ties count half).

    >>> roc_auc([True, False, True, False], [0.9, 0.1, 0.5, 0.5])
    0.875
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(values, dtype=float)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()  # (P, N) compared pairwise
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def outcome_of(score: Score, outcome: str, threshold: float = 0.5) -> bool | None:
    """The verifiable outcome of one score: the outcome criterion's value >= threshold."""
    for c in score.criteria:
        if c.id == outcome and c.value is not None:
            return c.value >= threshold
    return None


def _values(scores: Sequence[Score], criterion: str) -> list[float | None]:
    out: list[float | None] = []
    for s in scores:
        match = [c for c in s.criteria if c.id == criterion and c.applicable]
        out.append(match[0].value if match else None)
    return out


def agreement(scores: Sequence[Score], outcome: str, criterion: str, threshold: float = 0.5) -> CriterionAgreement:
    """How well ``criterion`` predicts ``outcome`` over ``scores``."""
    labels = [outcome_of(s, outcome, threshold) for s in scores]
    values = _values(scores, criterion)
    sources = [c.source for s in scores for c in s.criteria if c.id == criterion]
    unscorable = sum(1 for s, y in zip(scores, labels, strict=True) if y is not None and any(c.id == criterion and c.unscorable for c in s.criteria))
    pairs = [(y, v) for y, v in zip(labels, values, strict=True) if y is not None and v is not None]
    result = CriterionAgreement(criterion=criterion, source=sources[0] if sources else "?", n=len(pairs), unscorable=unscorable)
    if not pairs:
        return result
    y = np.array([p[0] for p in pairs], dtype=bool)
    v = np.array([p[1] for p in pairs], dtype=float)
    result.accuracy = float(((v >= threshold) == y).mean())
    result.auc = roc_auc(y.tolist(), v.tolist())
    result.mean_if_success = float(v[y].mean()) if y.any() else None
    result.mean_if_failure = float(v[~y].mean()) if (~y).any() else None
    return result


def design_matrix(scores: Sequence[Score], outcome: str, criteria: Sequence[str], threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``X (N, C)`` of criterion values and ``y (N,)`` outcomes, over episodes that have all of them."""
    columns = [_values(scores, c) for c in criteria]
    rows, ys = [], []
    for i, s in enumerate(scores):
        y = outcome_of(s, outcome, threshold)
        row = [col[i] for col in columns]
        if y is not None and all(v is not None for v in row):
            rows.append(row)
            ys.append(float(y))
    return np.array(rows, dtype=float).reshape(len(rows), len(criteria)), np.array(ys)


def _fit(x: np.ndarray, y: np.ndarray, method: FitMethod, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw coefficients (C,), rubric weights (C,) >= 0 summing to 1)."""
    if method == "nnls":
        from scipy.optimize import nnls

        coef, _ = nnls(x, y)  # (C,)
    else:
        from sklearn.linear_model import LogisticRegression

        if len(set(y.tolist())) < 2:
            raise ValueError("a logistic fit needs both successes and failures")
        coef = LogisticRegression(C=1.0, random_state=seed).fit(x, y).coef_[0]  # (C,)
    positive = np.clip(coef, 0.0, None)
    weights = positive / positive.sum() if positive.sum() > 0 else np.full(len(coef), 1.0 / len(coef))
    return coef, weights


def fit_weights(scores: Sequence[Score], outcome: str, criteria: Sequence[str], method: FitMethod = "nnls", threshold: float = 0.5, folds: int = 5, seed: int = 0) -> WeightFit | None:
    """Fit weights of ``criteria`` whose weighted mean best predicts ``outcome``.

    Returns:
        None when fewer than 4 episodes have the outcome and every criterion.
    """
    x, y = design_matrix(scores, outcome, criteria, threshold)
    if len(y) < 4 or not criteria:
        return None
    coef, weights = _fit(x, y, method, seed)
    fit = WeightFit(
        method=method,
        criteria=list(criteria),
        weights=dict(zip(criteria, weights.tolist(), strict=True)),
        coefficients=dict(zip(criteria, coef.tolist(), strict=True)),
        n=len(y),
        auc=roc_auc((y > 0.5).tolist(), (x @ weights).tolist()),
    )
    fit.cv_auc = _cv_auc(x, y, method, folds, seed)
    return fit


def _cv_auc(x: np.ndarray, y: np.ndarray, method: FitMethod, folds: int, seed: int) -> float | None:
    if len(y) < 2 * folds:
        return None
    fold = np.arange(len(y)) % folds  # (N,) deterministic interleaved folds
    predicted = np.zeros(len(y))
    for k in range(folds):
        train = fold != k
        try:
            _, weights = _fit(x[train], y[train], method, seed)
        except ValueError:
            return None
        predicted[~train] = x[~train] @ weights
    return roc_auc((y > 0.5).tolist(), predicted.tolist())


def calibrate(
    scores: Sequence[Score],
    outcome: str,
    criteria: Sequence[str] | None = None,
    method: FitMethod = "nnls",
    threshold: float = 0.5,
) -> CalibrationReport:
    """Agreement of each criterion with ``outcome`` and a weight fit.

    Args:
        scores: Scores that carry both the outcome criterion and the criteria to calibrate.
        outcome: Id of the verifiable criterion taken as ground truth.
        criteria: Criteria to calibrate (default: the critic-sourced ones, or all others if none).
        method: "nnls" (non-negative least squares) or "logistic".
        threshold: A value >= threshold counts as success / a positive prediction.
    """
    if criteria is None:
        seen = {c.id: c.source for s in scores for c in s.criteria if c.id != outcome}
        critic = [cid for cid, src in seen.items() if src.startswith("critic:")]
        criteria = critic or list(seen)
    labels = [outcome_of(s, outcome, threshold) for s in scores]
    known = [y for y in labels if y is not None]
    totals = [(y, s.total) for y, s in zip(labels, scores, strict=True) if y is not None and s.total is not None]
    return CalibrationReport(
        outcome=outcome,
        threshold=threshold,
        episodes=len(scores),
        with_outcome=len(known),
        success_rate=sum(known) / len(known) if known else None,
        agreement=[agreement(scores, outcome, c, threshold) for c in criteria],
        fit=fit_weights(scores, outcome, criteria, method, threshold),
        total_auc=roc_auc([t[0] for t in totals], [t[1] for t in totals]) if totals else None,
    )
