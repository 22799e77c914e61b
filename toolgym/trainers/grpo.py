"""GRPO (and the Kimi K2 objective) on a local MoE policy, one iteration read top to bottom.

``GRPOTrainer.iteration()``:

1. draw the iteration's tasks (``tasks_per_iteration`` of them; the data position is the
   iteration index, so a resumed run draws the same tasks);
2. roll out K siblings per task with the policy itself (``run_episodes``, batched generation);
3. score every episode with the rubric; unscorable episodes are dropped and counted, never 0;
   over-budget episodes are cut and penalized (``experience.collect``);
4. group advantages (GRPO: divided by the group std; Dr. GRPO: not), dropping groups with fewer
   than two scorable siblings and counting (optionally filtering) zero-variance groups;
5. minibatch updates with gradient accumulation (``update.update_policy``): the selected loss,
   the MoE router aux loss, optional KL and PTX terms, skip-on-NaN, clipping, QK-Clip;
6. metrics (names in ``toolgym.trainers.metrics``).

Example (used by the demo and ``toolgym train``):

    cfg = TrainConfig.from_yaml("examples/configs/grpo_tiny.yaml")
    model, tokenizer = load_policy(cfg)          # toolgym.trainers.run
    trainer = GRPOTrainer(cfg, model, tokenizer)
    for _ in range(cfg.run.iterations):
        print(trainer.iteration())
    print(trainer.evaluate())
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from toolgym.envs.canonical import seed_from
from toolgym.envs.types import Task
from toolgym.policy import SamplingParams
from toolgym.rollouts.loop import EnvSource, run_episodes, sample_tasks
from toolgym.trainers import metrics as m
from toolgym.trainers import rl
from toolgym.trainers.config import TrainConfig, env_source, load_rubric_for
from toolgym.trainers.experience import Collected, Scored, collect
from toolgym.trainers.update import Batch, LossSettings, make_batch, update_policy

TaskSource = Callable[[int, int], list[Task]]
"""``(first_index, n) -> tasks``: the training tasks at positions ``first_index .. first_index+n-1``."""


class GRPOTrainer:
    """Group-relative policy optimization over toolgym episodes.

    Args:
        config: The run's config (``algorithm.loss`` picks grpo / dapo / dr_grpo / k2).
        model: A transformers causal LM (trained in place).
        tokenizer: Its tokenizer with a tool-capable chat template.
        env: Env id or factory (default: ``config.env.id``).
        rubric: A ``Rubric`` (default: from ``config.env.rubric`` or the env's catalog rubric).
        critics: Critics for critic-sourced rubric criteria.
        tasks: Where training tasks come from (default: the env's own seeded tasks).
        heldout: Held-out tasks for ``evaluate`` (default: ``config.env.heldout_tasks`` seeded tasks).
        ptx_rows: Supervised rows (objects with ``ids`` and ``mask``) for the PTX loss.
    """

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any, *, env: EnvSource | None = None,
                 rubric: Any = None, critics: Any = None, tasks: TaskSource | None = None,
                 heldout: Sequence[Task] | None = None, ptx_rows: Sequence[Any] | None = None):
        from toolgym.policies.hf_policy import HFPolicy
        from toolgym.trainers.optim import build_optimizer

        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.env: EnvSource = env if env is not None else env_source(config)
        self.rubric = rubric if rubric is not None else load_rubric_for(config)
        self.critics = critics
        self.task_source: TaskSource = tasks or (lambda first, n: sample_tasks(self.env, n=n, seed=config.env.task_seed + first))
        self.heldout = list(heldout) if heldout is not None else None
        self.policy = HFPolicy(model, tokenizer, max_batch_size=64)
        self.pad_id = self.policy.pad_id
        o = config.optim
        self.optimizer = build_optimizer(model, kind=o.kind, lr=o.lr, weight_decay=o.weight_decay,
                                         qk_clip_tau=o.qk_clip_tau if o.kind == "muonclip" else None)
        self.ref_model = _frozen_copy(model) if config.algorithm.kl_beta > 0 else None
        self.settings = LossSettings.from_config(config)
        self.ptx_batches = _ptx_batches(ptx_rows or [], self.pad_id, config.ptx.batch_size)
        self.generator = torch.Generator().manual_seed(config.run.seed)
        self.iteration_index = 0
        """Iterations done; also the data position (tasks drawn = index x tasks_per_iteration)."""
        seed_everything(config.run.seed)

    # ------------------------------------------------------------------ the loop

    def iteration(self) -> dict[str, float]:
        """One RL iteration: rollouts, scoring, advantages, updates. Returns its metrics."""
        cfg, i = self.config, self.iteration_index
        n = cfg.rollout.tasks_per_iteration
        tasks = self.task_source(i * n, n)
        t0 = time.perf_counter()
        # >> 33: a 31-bit run seed, so reset seeds (run seed + task index) stay small ints
        episodes = self.rollout(tasks, group_size=cfg.algorithm.group_size, temperature=cfg.temperature_at(i),
                                seed=seed_from(cfg.run.seed, "train", i) >> 33)
        t1 = time.perf_counter()
        scores = self.score(episodes)
        t2 = time.perf_counter()
        collected = collect(episodes, scores, cfg.algorithm.group_size, budget=cfg.rollout.token_budget,
                            penalty=cfg.algorithm.budget_penalty)
        batch, counts = self.build_batch(collected)
        stats = self.update(batch) if batch is not None else {}
        t3 = time.perf_counter()
        self.iteration_index += 1
        # Env steps run one at a time on the event loop, so their sum is wall time; the rest of
        # the rollout is waiting for batched generation (per-turn policy_s overlap across episodes).
        env_s = min(sum(t.env_s for e in episodes for t in e.turns), t1 - t0)
        return {
            m.ITERATION: float(i), m.TEMPERATURE: cfg.temperature_at(i), **counts, **stats,
            **_reward_metrics(collected), m.EPISODES: float(len(episodes)),
            m.UNSCORABLE: float(collected.unscorable), m.OVER_BUDGET: float(collected.over_budget),
            m.TIME_PREFIX + "rollout_s": t1 - t0, m.TIME_PREFIX + "generation_s": t1 - t0 - env_s,
            m.TIME_PREFIX + "env_s": env_s, m.TIME_PREFIX + "scoring_s": t2 - t1,
            m.TIME_PREFIX + "update_s": t3 - t2,
        }

    def rollout(self, tasks: Sequence[Task], *, group_size: int, temperature: float, seed: int) -> list:
        """Episodes of ``tasks`` (``group_size`` siblings each, adjacent) sampled from the policy."""
        r = self.config.rollout
        sampling = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=temperature, top_p=r.top_p)
        self.model.eval()  # generation runs under inference_mode on the policy's own thread
        return run_episodes(self.env, self.policy, tasks=list(tasks), group_size=group_size, seed=seed,
                            sampling=sampling, concurrency=r.concurrency)

    def score(self, episodes: Sequence[Any]) -> list:
        """One rubric ``Score`` per episode (unscorable episodes get unscorable scores)."""
        from toolgym.rubrics import score_episodes_sync

        return score_episodes_sync(episodes, self.rubric, critics=self.critics)

    def build_batch(self, collected: Collected) -> tuple[Batch | None, dict[str, float]]:
        """Group-relative advantages for the rows of every group that can teach something."""
        a = self.config.algorithm
        rows, advantages, rewards, baselines = [], [], [], []
        dropped = zero_var = 0
        for group in collected.groups:
            if len(group) < 2:  # nothing to compare a lone sibling with
                dropped += 1
                continue
            r = torch.tensor([[s.reward for s in group]])  # (1, K)
            if bool(rl.zero_variance_groups(r)[0]):
                zero_var += 1
                if a.filter_zero_variance:
                    continue
            adv = rl.group_advantages(r, scale_by_std=self.config.scale_by_std)[0]  # (K,)
            mean = float(r.mean())
            for scored, advantage in zip(group, adv.tolist(), strict=True):
                for row in scored.rows:
                    rows.append(row)
                    advantages.append(advantage)
                    rewards.append(scored.reward)
                    baselines.append(mean)
        counts = {m.GROUPS: float(len(collected.groups)), m.GROUPS_DROPPED: float(dropped),
                  m.ZERO_VARIANCE_GROUPS: float(zero_var), m.ROWS: float(len(rows)),
                  m.TOKENS: float(sum(sum(row.loss_mask) for row in rows))}
        if not rows:
            return None, counts
        return make_batch(rows, self.pad_id, advantages=advantages, rewards=rewards, baselines=baselines), counts

    def update(self, batch: Batch, *, value_fn: Any = None, extra_optimizers: Sequence[Any] = ()) -> dict[str, float]:
        """Minibatch updates over the iteration's rows; returns the update metrics."""
        o = self.config.optim
        stats = update_policy(
            self.model, [self.optimizer, *extra_optimizers], batch, self.settings, minibatch_size=o.minibatch_size,
            micro_batch_size=o.micro_batch_size, epochs=o.epochs, generator=self.generator, ref_model=self.ref_model,
            value_fn=value_fn, ptx_batches=self.ptx_batches, after_step=self._after_step,
        )
        return stats.metrics()

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

    def train(self, iterations: int | None = None, on_iteration: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Run ``iterations`` more iterations (default: up to ``config.run.iterations``)."""
        todo = iterations if iterations is not None else self.config.run.iterations - self.iteration_index
        history = []
        for _ in range(max(0, todo)):
            row = self.iteration()
            history.append(row)
            if on_iteration is not None:
                on_iteration(row)
        return history

    # ------------------------------------------------------------------ state (checkpoints)

    def extra_state(self) -> dict[str, Any]:
        """Trainer state beyond model and optimizer, for checkpoints."""
        return {"iteration": self.iteration_index, "generator": self.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.iteration_index = int(state["iteration"])
        self.generator.set_state(state["generator"])

    def optimizers(self) -> dict[str, Any]:
        """Optimizers by name (checkpoints save each)."""
        return {"policy": self.optimizer}

    def close(self) -> None:
        self.policy.close()

    def _after_step(self) -> dict[str, float]:
        # MuonClip runs QK-Clip inside its step and keeps what it saw.
        report = getattr(self.optimizer, "last_qk_report", None)
        return report.metrics() if report is not None else {}


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _reward_metrics(collected: Collected) -> dict[str, float]:
    items: list[Scored] = [s for g in collected.groups for s in g]
    if not items:
        return {}
    rewards = torch.tensor([s.reward for s in items])
    return {m.REWARD_MEAN: float(rewards.mean()), m.REWARD_STD: float(rewards.std(unbiased=False)),
            m.SCORE_MEAN: sum(s.score for s in items) / len(items)}


def _frozen_copy(model: Any) -> Any:
    from toolgym.trainers.value import detached_copy

    ref = detached_copy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _ptx_batches(rows: Sequence[Any], pad_id: int, size: int) -> list[Batch]:
    """Supervised rows (``ids``/``mask``) as batches with zero advantages (only ``loss_mask`` is read)."""
    from toolgym.rollouts.rows import TokenRow

    token_rows = [TokenRow(episode_id=f"ptx/{k}", input_ids=list(r.ids), loss_mask=list(r.mask),
                           behaviour_logprobs=[0.0] * len(r.ids), prompt_len=0, turn_spans=[], turn_indices=[],
                           ends_episode=True, terminated=True, truncated=False) for k, r in enumerate(rows)]
    return [make_batch(token_rows[i : i + size], pad_id, advantages=[0.0] * len(token_rows[i : i + size]),
                       rewards=[0.0] * len(token_rows[i : i + size])) for i in range(0, len(token_rows), size)]
