"""From scored episodes to training rows: rewards, token budgets, unscorable episodes.

Shared by GRPO and PPO. An episode becomes ``Scored`` when both the rollout and the rubric
could judge it; anything else is counted in ``unscorable`` and never given a reward. An
episode whose sampled tokens pass its token budget (K2's per-task budget) has its rows cut at
the budget, its reward lowered by the budget penalty, and ``metadata["budget_stop"]`` set to
``"token_budget"``, so the stop is recorded next to the environment's own stop reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolgym.rollouts.episode import Episode
from toolgym.rollouts.rows import TokenRow, episode_to_rows

BUDGET_STOP = "token_budget"
"""``Episode.metadata["budget_stop"]`` of an episode cut at its token budget."""


@dataclass
class Scored:
    """One scorable episode with its reward and training rows."""

    episode: Episode
    score: float
    """Rubric total in [0, 1]."""
    reward: float
    """The reward trained on: the score, minus the budget penalty when over budget."""
    rows: list[TokenRow]
    over_budget: bool = False


@dataclass
class Collected:
    """An iteration's episodes after scoring, grouped by task (siblings together)."""

    groups: list[list[Scored]] = field(default_factory=list)
    unscorable: int = 0
    over_budget: int = 0
    episodes: int = 0


def token_budget(episode: Episode, default: int | None) -> int | None:
    """The episode's budget of sampled tokens: the task's ``metadata['token_budget']`` or ``default``."""
    value = episode.task.metadata.get("token_budget", default)
    return int(value) if value is not None else None


def cut_rows(rows: Sequence[TokenRow], budget: int) -> list[TokenRow]:
    """Rows holding only the first ``budget`` sampled tokens (later tokens and rows dropped)."""
    out: list[TokenRow] = []
    left = budget
    for row in rows:
        if left <= 0:
            break
        sampled = 0
        end = len(row.input_ids)
        for i, m in enumerate(row.loss_mask):
            if m:
                sampled += 1
                if sampled == left:
                    end = i + 1
                    break
        left -= sampled
        if end < len(row.input_ids):
            row = row.model_copy(update={
                "input_ids": row.input_ids[:end], "loss_mask": row.loss_mask[:end],
                "behaviour_logprobs": row.behaviour_logprobs[:end],
                "turn_spans": [(a, min(b, end)) for a, b in row.turn_spans if a < end],
                "ends_episode": True, "terminated": False, "truncated": True,
            })
        out.append(row)
    return out


def sampled_tokens(episode: Episode) -> int:
    """Tokens the policy generated over the whole episode."""
    return sum(len(t.token_ids or []) for t in episode.turns)


def collect(episodes: Sequence[Episode], scores: Sequence[Any], group_size: int, *, budget: int | None,
            penalty: float) -> Collected:
    """Group episodes (``group_size`` adjacent siblings per task) and turn the scorable ones into rows.

    Args:
        episodes: ``run_episodes`` output, siblings adjacent.
        scores: One rubric ``Score`` per episode.
        group_size: Siblings per task.
        budget: Default token budget (a task's metadata may override it); None for no budget.
        penalty: Subtracted from the reward of an over-budget episode.
    """
    out = Collected(episodes=len(episodes))
    for start in range(0, len(episodes), group_size):
        group: list[Scored] = []
        for episode, score in zip(episodes[start : start + group_size], scores[start : start + group_size], strict=True):
            rows = episode_to_rows(episode)
            if not episode.scorable or not score.scorable or score.total is None or not rows:
                out.unscorable += 1  # infrastructure or judge failure: dropped, never a 0 reward
                continue
            item = Scored(episode=episode, score=float(score.total), reward=float(score.total), rows=rows)
            limit = token_budget(episode, budget)
            if limit is not None and sampled_tokens(episode) > limit:
                item.rows, item.over_budget = cut_rows(rows, limit), True
                item.reward -= penalty
                episode.metadata["budget_stop"] = BUDGET_STOP
                out.over_budget += 1
            group.append(item)
        out.groups.append(group)
    return out
