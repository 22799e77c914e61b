"""Metric names, in one place, with what each one means.

Names are stable: dashboards and benchmark JSON refer to them. The diagnostics that reveal
silent failure (failure fractions, bad-call rates, stop reasons) are first-class metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolgym.rollouts.episode import Episode

EPISODES = "rollout/episodes"
"""Number of finished episodes."""
EPISODES_PER_S = "rollout/episodes_per_s"
"""Finished episodes per wall-clock second of the whole run."""
TURNS_MEAN = "rollout/turns_mean"
"""Mean assistant turns per episode."""
TOOL_CALLS = "rollout/tool_calls"
"""Tool calls parsed from assistant turns, all episodes."""
BAD_CALL_RATE = "rollout/bad_call_rate"
"""Error observations (parse errors, unknown tools, bad arguments, ...) per parsed or attempted call."""
REWARD_MEAN = "rollout/reward_mean"
"""Mean environment outcome reward over scorable episodes."""
EXPECTED_STATE_RATE = "rollout/expected_state_rate"
"""Fraction of episodes (with an expected digest) whose final state digest matches it."""
FAILURE_FRAC = "rollout/failure_frac"
"""Fraction of episodes lost to infrastructure (policy or env errors): unscorable, never reward 0."""
STOP_PREFIX = "rollout/stop/"
"""``rollout/stop/<reason>``: episodes that ended for each StopReason."""
ERROR_PREFIX = "rollout/errors/"
"""``rollout/errors/<kind>``: error observations of each kind."""


def summarize(episodes: Iterable[Episode], wall_s: float | None = None) -> dict[str, float]:
    """Aggregate metrics of a batch of episodes, keyed by the names above."""
    eps = list(episodes)
    out: dict[str, float] = {EPISODES: float(len(eps))}
    if not eps:
        return out
    stops = Counter(e.stop_reason.value for e in eps)
    errors: Counter[str] = Counter()
    for e in eps:
        errors.update(e.error_counts())
    calls = sum(t.tool_calls for e in eps for t in e.turns)
    bad = sum(errors.values())
    scorable = [e for e in eps if e.scorable]
    with_expected = [e for e in eps if e.reached_expected_state is not None]
    out[TURNS_MEAN] = sum(len(e.turns) for e in eps) / len(eps)
    out[TOOL_CALLS] = float(calls)
    out[BAD_CALL_RATE] = bad / max(1, calls + errors.get("parse_error", 0))
    out[REWARD_MEAN] = sum(e.reward for e in scorable) / max(1, len(scorable))
    out[FAILURE_FRAC] = 1 - len(scorable) / len(eps)
    if with_expected:
        out[EXPECTED_STATE_RATE] = sum(bool(e.reached_expected_state) for e in with_expected) / len(with_expected)
    if wall_s:
        out[EPISODES_PER_S] = len(eps) / wall_s
    out.update({STOP_PREFIX + k: float(v) for k, v in sorted(stops.items())})
    out.update({ERROR_PREFIX + k: float(v) for k, v in sorted(errors.items())})
    return out
