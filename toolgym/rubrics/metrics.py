"""Metric names of the rubrics layer, as constants, and the function that computes them.

Every name is stable: dashboards and benchmark scripts read them. The unscorable fractions
are the diagnostics that reveal silent failure (a judge that never parses, an endpoint that
times out): they must be watched next to the mean score.
"""

from __future__ import annotations

from collections.abc import Sequence

from toolgym.rubrics.score import Score

SCORE_MEAN = "score/mean"
"""Mean total over scorable episodes."""
SCORE_STD = "score/std"
"""Standard deviation of the total over scorable episodes."""
SCORE_COUNT = "score/count"
"""Episodes scored (scorable or not)."""
SCORE_UNSCORABLE_FRAC = "score/unscorable_frac"
"""Fraction of episodes whose total is unscorable (infrastructure, judge or check failure)."""
SCORE_GATED_FRAC = "score/gated_frac"
"""Fraction of scorable episodes set to 0 by a failed gate."""
SCORE_PENALTY_MEAN = "score/penalty_mean"
"""Mean total penalty subtracted over scorable episodes."""
UNSCORABLE_KIND = "score/unscorable/{kind}"
"""Number of unscorable criterion results of one kind (judge_timeout, judge_unparseable, ...)."""
CRITERION_MEAN = "score/criterion/{id}/mean"
"""Mean normalized value of one criterion over the episodes where it was scored."""
CRITERION_UNSCORABLE_FRAC = "score/criterion/{id}/unscorable_frac"
"""Fraction of applicable results of one criterion that were unscorable."""
COMPONENT_LATENCY = "score/component/{name}/latency_s"
"""Total seconds spent in one component (a check or a critic) over all episodes."""
COMPONENT_CALLS = "score/component/{name}/calls"
"""Model calls made by one critic, retries included (cache hits excluded)."""
COMPONENT_CACHE_HITS = "score/component/{name}/cache_hits"
"""Judgements served from the cache by one critic."""
COMPONENT_TOKENS = "score/component/{name}/tokens"
"""Prompt plus completion tokens spent by one critic."""


def score_metrics(scores: Sequence[Score]) -> dict[str, float]:
    """Aggregate metrics of many scores, keyed by the constants of this module.

    Args:
        scores: Scores of a batch of episodes.

    Returns:
        A flat dict of floats; criterion and component names are filled into the templates.
    """
    out: dict[str, float] = {SCORE_COUNT: float(len(scores))}
    if not scores:
        return out
    totals = [s.total for s in scores if s.total is not None]
    out[SCORE_UNSCORABLE_FRAC] = 1.0 - len(totals) / len(scores)
    if totals:
        mean = sum(totals) / len(totals)
        out[SCORE_MEAN] = mean
        out[SCORE_STD] = (sum((t - mean) ** 2 for t in totals) / len(totals)) ** 0.5
        scorable = [s for s in scores if s.total is not None]
        out[SCORE_GATED_FRAC] = sum(s.gated_by is not None for s in scorable) / len(scorable)
        out[SCORE_PENALTY_MEAN] = sum(s.penalty for s in scorable) / len(scorable)
    out.update(_criterion_metrics(scores))
    out.update(_component_metrics(scores))
    return out


def _criterion_metrics(scores: Sequence[Score]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    applicable: dict[str, int] = {}
    unscorable: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for score in scores:
        if score.unscorable is not None and not score.criteria:
            kinds[score.unscorable.kind] = kinds.get(score.unscorable.kind, 0) + 1
        for c in score.criteria:
            if not c.applicable:
                continue
            applicable[c.id] = applicable.get(c.id, 0) + 1
            if c.unscorable is not None:
                unscorable[c.id] = unscorable.get(c.id, 0) + 1
                kinds[c.unscorable.kind] = kinds.get(c.unscorable.kind, 0) + 1
            elif c.value is not None:
                values.setdefault(c.id, []).append(c.value)
    out: dict[str, float] = {}
    for cid, n in applicable.items():
        out[CRITERION_UNSCORABLE_FRAC.format(id=cid)] = unscorable.get(cid, 0) / n
        if values.get(cid):
            out[CRITERION_MEAN.format(id=cid)] = sum(values[cid]) / len(values[cid])
    for kind, n in kinds.items():
        out[UNSCORABLE_KIND.format(kind=kind)] = float(n)
    return out


def _component_metrics(scores: Sequence[Score]) -> dict[str, float]:
    out: dict[str, float] = {}
    for score in scores:
        for comp in score.components:
            pairs = [(COMPONENT_LATENCY, comp.latency_s)]
            if comp.name.startswith("critic:"):  # checks make no model calls; their zeros are noise
                pairs += [
                    (COMPONENT_CALLS, comp.calls),
                    (COMPONENT_CACHE_HITS, comp.cache_hits),
                    (COMPONENT_TOKENS, comp.prompt_tokens + comp.completion_tokens),
                ]
            for template, value in pairs:
                key = template.format(name=comp.name)
                out[key] = out.get(key, 0.0) + float(value)
    return out
