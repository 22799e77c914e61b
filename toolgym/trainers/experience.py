"""The generation half of an RL iteration: tasks -> episodes -> rubric scores -> training rows.

Shared by GRPO and PPO. ``Sampler`` holds what generation needs (env, policy, rubric, task
source) and no optimizer state, so it can later run in another process with synced weights;
``collect`` turns its scored episodes into rows. An episode becomes ``Scored`` when both the rollout and the rubric
could judge it; anything else is counted in ``unscorable`` and never given a reward. An
episode whose sampled tokens pass its token budget (K2's per-task budget) has its rows cut at
the budget, its reward lowered by the budget penalty, and ``metadata["budget_stop"]`` set to
``"token_budget"``, so the stop is recorded next to the environment's own stop reason.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from toolgym.envs.types import Task
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policy import SamplingParams
from toolgym.rollouts.episode import Episode
from toolgym.rollouts.loop import EnvSource, run_episodes, sample_tasks
from toolgym.rollouts.rows import TokenRow, episode_to_rows
from toolgym.rubrics import Score, score_episodes_sync
from toolgym.trainers import metrics as m
from toolgym.trainers.config import TrainConfig, env_source, load_rubric_for

TaskSource = Callable[[int, int], list[Task]]
"""``(first_index, n) -> tasks``: the training tasks at positions ``first_index .. first_index+n-1``."""

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
        for i, bit in enumerate(row.loss_mask):
            if bit:
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
                "turn_indices": [i for (a, _), i in zip(row.turn_spans, row.turn_indices, strict=True) if a < end],
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


class Sampler:
    """Episodes from the policy, and their rubric scores: the generation half of an iteration.

    Args:
        config: The run's config (env, rollout and held-out settings are read).
        model: The policy model (shared with the trainer, which updates it in place).
        tokenizer: Its tokenizer with a tool-capable chat template.
        env: Env id or factory (default: ``config.env.id``).
        rubric: A ``Rubric`` (default: from ``config.env.rubric`` or the env's catalog rubric).
        critics: Critics for critic-sourced rubric criteria.
        tasks: Where training tasks come from (default: the env's own seeded tasks).
        heldout: Held-out tasks for ``evaluate`` (default: ``config.env.heldout_tasks`` seeded tasks).
    """

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any, *, env: EnvSource | None = None,
                 rubric: Any = None, critics: Any = None, tasks: TaskSource | None = None,
                 heldout: Sequence[Task] | None = None):
        self.config, self.model = config, model
        self.env: EnvSource = env if env is not None else env_source(config)
        self.rubric = rubric if rubric is not None else load_rubric_for(config)
        self.critics = critics
        self.task_source: TaskSource = tasks or (lambda first, n: sample_tasks(self.env, n=n, seed=config.env.task_seed + first))
        self.heldout = list(heldout) if heldout is not None else None
        self.policy = HFPolicy(model, tokenizer, max_batch_size=64, chat_template_kwargs=config.model.chat_template_kwargs,
                               record_routing=config.algorithm.routing_replay)
        self.pad_id = self.policy.pad_id
        self.pool: Any = None
        """Where the envs live (``system.pool``); None: run_episodes' own local pool."""
        if config.system.pool == "ray" and config.system.mode == "inprocess":
            from toolgym.trainers.system.cluster import env_pool

            self.pool = env_pool(config, self.env)

    def tasks(self, iteration: int) -> list[Task]:
        """The training tasks of ``iteration``: the data position is the iteration index, so a resumed run draws the same."""
        n = self.config.rollout.tasks_per_iteration
        return self.task_source(iteration * n, n)

    def rollout(self, tasks: Sequence[Task], *, group_size: int, temperature: float, seed: int) -> list[Episode]:
        """Episodes of ``tasks`` (``group_size`` siblings each, adjacent) sampled from the policy."""
        r = self.config.rollout
        sampling = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=temperature, top_p=r.top_p)
        self.model.eval()  # generation runs under inference_mode on the policy's own thread
        return run_episodes(self.env, self.policy, tasks=list(tasks), group_size=group_size, seed=seed,
                            sampling=sampling, concurrency=r.concurrency, pool=self.pool)

    def score(self, episodes: Sequence[Episode]) -> list[Score]:
        """One rubric ``Score`` per episode (unscorable episodes get unscorable scores)."""
        return score_episodes_sync(episodes, self.rubric, critics=self.critics)

    def evaluate(self, tasks: Sequence[Task] | None = None) -> dict[str, float]:
        """Greedy held-out success and mean score (``{}`` when there are no held-out tasks)."""
        cfg = self.config
        if tasks is None:
            if self.heldout is None:
                self.heldout = sample_tasks(self.env, n=cfg.env.heldout_tasks, seed=cfg.env.heldout_seed) if cfg.env.heldout_tasks else []
            tasks = self.heldout
        if not tasks:
            return {}
        episodes = self.rollout(tasks, group_size=1, temperature=0.0, seed=cfg.env.heldout_seed)
        totals = [s.total for s in self.score(episodes) if s.scorable and s.total is not None]
        success = sum(t >= cfg.env.success_threshold for t in totals)
        return {m.HELDOUT_SUCCESS: success / len(tasks), m.HELDOUT_SCORE: sum(totals) / max(1, len(totals))}

    def close(self) -> None:
        self.policy.close()
        if self.pool is not None:
            from toolgym.trainers.system.cluster import close_pool

            close_pool(self.pool)


def iteration_metrics(episodes: Sequence[Episode], collected: Collected, *, rollout_s: float, scoring_s: float,
                      update_s: float) -> dict[str, float]:
    """Reward, episode-count and timing metrics of one iteration (the trainers add theirs)."""
    # Env steps run one at a time on the event loop, so their sum is wall time; the rest of
    # the rollout is waiting for batched generation (per-turn policy_s overlap across episodes).
    env_s = min(sum(t.env_s for e in episodes for t in e.turns), rollout_s)
    items = [s for g in collected.groups for s in g]
    rewards: dict[str, float] = {}
    if items:
        r = torch.tensor([s.reward for s in items])
        rewards = {m.REWARD_MEAN: float(r.mean()), m.REWARD_STD: float(r.std(unbiased=False)),
                   m.SCORE_MEAN: sum(s.score for s in items) / len(items)}
    return {
        **rewards, m.EPISODES: float(len(episodes)), m.UNSCORABLE: float(collected.unscorable),
        m.OVER_BUDGET: float(collected.over_budget), m.TIME_PREFIX + "rollout_s": rollout_s,
        m.TIME_PREFIX + "generation_s": rollout_s - env_s, m.TIME_PREFIX + "env_s": env_s,
        m.TIME_PREFIX + "scoring_s": scoring_s, m.TIME_PREFIX + "update_s": update_s,
    }


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
