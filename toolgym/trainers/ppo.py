"""PPO over multi-turn toolgym episodes: a value function, per-token GAE, reward at the end.

GRPO's sibling (``toolgym.trainers.grpo``), not its subclass: the same rollouts and scores
(``experience.Sampler``), the same optimizer step (``toolgym.trainers.step``), its own
advantages and loss. One iteration (``PPOTrainer.iteration``):

1. **rollouts** and 2. **scores**, as in GRPO (K may be 1: there is no group baseline);
3. **advantages** by GAE over each row's sampled tokens (environment tokens are context, not
   steps). The row's reward sits on its last sampled token. A row whose episode
   **terminated** (answered, user stop) ends with value 0; a **truncated** one (max turns,
   token budget, context limit, or a row cut at a fork) bootstraps from the value of its last
   state. Advantages are whitened; the values they came from are kept as ``old_values``;
4. **update**: ``epochs`` shuffled passes, one step per minibatch, accumulated over
   micro-batches (``accumulate``: the clipped surrogate, k3 KL, router balance loss and the
   value loss, clipped around ``old_values`` when ``algorithm.value_clip`` is set).

``algorithm.value_model`` picks a value head on the policy (``"head"``) or a separate critic
copy (``"critic"``); either has its own AdamW optimizer, stepped with the policy's, and is
saved in checkpoints.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from toolgym.envs.canonical import seed_from
from toolgym.envs.types import Task
from toolgym.errors import ConfigError
from toolgym.rollouts.loop import EnvSource
from toolgym.trainers import metrics as m
from toolgym.trainers import rl
from toolgym.trainers.batch import Batch, make_batch, micro_batches, ptx_batches
from toolgym.trainers.config import TrainConfig
from toolgym.trainers.experience import Collected, Sampler, TaskSource, collect, iteration_metrics, seed_everything
from toolgym.trainers.moe import router_terms, training_forward
from toolgym.trainers.optim import build_optimizer
from toolgym.trainers.sft import ptx_backward
from toolgym.trainers.step import OptimizerStep, SkipReason, UpdateStats
from toolgym.trainers.value import ValueModel, frozen_copy


@dataclass
class PPOSettings:
    """The loss terms of one PPO update, taken from a ``TrainConfig``."""

    aggregation: rl.Aggregation = "sequence"
    """``algorithm.loss`` "grpo": per-sequence mean; "dapo": token mean over the minibatch."""
    clip_low: float = 0.2
    """Ratio clip below: ``1 - clip_low``."""
    clip_high: float = 0.2
    """Ratio clip above: ``1 + clip_high``."""
    kl_beta: float = 0.0
    """Weight of the k3 KL to the reference model."""
    aux_weight: float = 0.0
    """Weight of the router balance loss."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    value_clip: float | None = None
    """Clip range of the value change around ``old_values`` in the value loss (None: unclipped)."""
    ptx_weight: float = 0.0
    """Weight of the supervised PTX loss."""

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> PPOSettings:
        a = cfg.algorithm
        return cls(aggregation="token" if a.loss == "dapo" else "sequence", clip_low=a.clip_low, clip_high=a.clip_high,
                   kl_beta=a.kl_beta, aux_weight=a.aux_loss_weight, value_coef=a.value_coef, value_clip=a.value_clip,
                   ptx_weight=cfg.ptx.weight)


class PPOTrainer:
    """PPO with GAE; the same arguments as ``GRPOTrainer`` (``algorithm.name`` must be ``"ppo"``)."""

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any, *, env: EnvSource | None = None,
                 rubric: Any = None, critics: Any = None, tasks: TaskSource | None = None,
                 heldout: Sequence[Task] | None = None, ptx_rows: Sequence[Any] | None = None):
        if config.algorithm.name != "ppo" or config.algorithm.value_model is None:
            raise ConfigError("PPOTrainer needs algorithm.name: ppo and algorithm.value_model ('head' or 'critic'); "
                              "for a GRPO config use GRPOTrainer (toolgym.trainers.run.build_trainer picks it)")
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.sampler = Sampler(config, model, tokenizer, env=env, rubric=rubric, critics=critics, tasks=tasks, heldout=heldout)
        """The generation half: tasks, rollouts, rubric scores, held-out evaluation."""
        o = config.optim
        self.optimizer = build_optimizer(model, kind=o.kind, lr=o.lr, weight_decay=o.weight_decay,
                                         qk_clip_tau=o.qk_clip_tau if o.kind == "muonclip" else None)
        self.ref_model = frozen_copy(model) if config.algorithm.kl_beta > 0 else None
        self.settings = PPOSettings.from_config(config)
        self.ptx_batches = ptx_batches(ptx_rows or [], self.sampler.pad_id, config.ptx.batch_size)
        self.generator = torch.Generator().manual_seed(config.run.seed)
        self.iteration_index = 0
        """Iterations done; also the data position (tasks drawn = index x tasks_per_iteration)."""
        seed_everything(config.run.seed)
        self.value = ValueModel(config.algorithm.value_model, model)  # after seeding: its init draws from torch's RNG
        self.value_optimizer = torch.optim.AdamW(list(self.value.parameters()), lr=o.lr, weight_decay=0.0)
        self.step = OptimizerStep([self.optimizer, self.value_optimizer], max_grad_norm=o.max_grad_norm,
                                  skip_grad_norm=o.skip_grad_norm)
        self.shard = (0, 1)
        """(rank, world) of a data-parallel learner (``toolgym.trainers.system``): it back-propagates every world-th micro-batch."""

    def iteration(self) -> dict[str, float]:
        """One PPO iteration: rollouts, scores, GAE advantages, update. Returns its metrics."""
        cfg, i, k = self.config, self.iteration_index, self.config.algorithm.group_size
        temperature = cfg.temperature_at(i)
        t0 = time.perf_counter()
        # 1. rollouts (>> 33: a 31-bit seed, so reset seeds stay small ints)
        episodes = self.sampler.rollout(self.sampler.tasks(i), group_size=k, temperature=temperature,
                                        seed=seed_from(cfg.run.seed, "train", i) >> 33)
        t1 = time.perf_counter()
        # 2. scores, then rows per scorable episode (budget cuts and penalties applied)
        scores = self.sampler.score(episodes)
        t2 = time.perf_counter()
        collected = collect(episodes, scores, k, budget=cfg.rollout.token_budget, penalty=cfg.algorithm.budget_penalty)
        # 3. advantages (GAE with the value model)
        batch, counts = self.build_batch(collected)
        # 4. update, at this iteration's learning rate
        self.step.set_lr_factor(cfg.lr_factor_at(i))
        stats = self.update(batch) if batch is not None else {}
        t3 = time.perf_counter()
        self.iteration_index += 1
        return {m.ITERATION: float(i), m.TEMPERATURE: temperature, m.LR: self.step.lr, **counts, **stats,
                **iteration_metrics(episodes, collected, rollout_s=t1 - t0, scoring_s=t2 - t1, update_s=t3 - t2)}

    def build_batch(self, collected: Collected) -> tuple[Batch | None, dict[str, float]]:
        """Rows of every scorable episode with per-token GAE advantages, returns and old values."""
        a = self.config.algorithm
        rows, rewards = [], []
        for group in collected.groups:
            for scored in group:
                for row in scored.rows:
                    rows.append(row)
                    rewards.append(scored.reward)
        counts = {m.GROUPS: float(len(collected.groups)), m.ROWS: float(len(rows)),
                  m.TOKENS: float(sum(sum(r.loss_mask) for r in rows))}
        if not rows:
            return None, counts
        batch = make_batch(rows, self.sampler.pad_id, advantages=[0.0] * len(rows), rewards=rewards)
        self.model.eval()
        full = self.value.predict(self.model, batch.input_ids, batch.attention_mask)  # (B, T)
        values = full[:, :-1]  # (B, T-1): the state in which each token 1 .. T-1 was sampled
        mask = batch.loss_mask[:, 1:]  # (B, T-1)
        # A row's reward only counts on the row that ends its episode; earlier fork rows bootstrap.
        ends = torch.tensor([r.ends_episode for r in rows])
        reward = torch.where(ends, batch.rewards, torch.zeros_like(batch.rewards))  # (B,)
        terminated = torch.tensor([r.terminated for r in rows])  # (B,)
        last = batch.attention_mask.sum(dim=1).clamp(min=1) - 1  # (B,) each row's last real position
        bootstrap = full[torch.arange(len(rows)), last]  # (B,) the value of the state after the row
        adv, returns = rl.gae(rl.terminal_rewards(reward, mask), values, mask, bootstrap=bootstrap,
                              terminated=terminated, gamma=a.gamma, lam=a.lam)  # (B, T-1) each
        adv = rl.masked_whiten(adv, mask)
        pad = torch.zeros(len(rows), 1)  # position 0 predicts nothing
        batch.advantages = torch.cat([pad, adv], dim=1)  # (B, T), aligned with input_ids
        batch.returns = torch.cat([pad, returns], dim=1)  # (B, T)
        batch.old_values = torch.cat([pad, values], dim=1)  # (B, T)
        return batch, counts

    def update(self, batch: Batch) -> dict[str, float]:
        """``epochs`` shuffled passes of minibatch steps over the iteration's rows; returns the update metrics."""
        return self.update_stats(batch).metrics()

    def update_stats(self, batch: Batch) -> UpdateStats:
        """``update`` returning the summed terms (a data-parallel learner adds up its ranks' shares before ``metrics()``)."""
        o, s, step = self.config.optim, self.settings, self.step
        step.reset_counts()
        self.model.train()
        stats = UpdateStats(step)
        ptx_i = 0
        for _ in range(o.epochs):
            order = torch.randperm(len(batch), generator=self.generator)
            for start in range(0, len(batch), o.minibatch_size):
                minibatch = batch.select(order[start : start + o.minibatch_size])
                step.zero_grad()
                sums, reason = accumulate(self.model, self.value, minibatch, s, o.micro_batch_size, ref_model=self.ref_model,
                                          shard=self.shard)
                if reason is None and s.ptx_weight > 0 and self.ptx_batches:
                    sums[m.PTX_LOSS] = ptx_backward(self.model, self.ptx_batches[ptx_i % len(self.ptx_batches)], s.ptx_weight)
                    ptx_i += 1
                stats.add(sums)
                if reason is not None:
                    step.skip(reason, f"(loss {sums.get(m.LOSS)})")
                elif step.step() is None:
                    report = getattr(self.optimizer, "last_qk_report", None)  # MuonClip's QK-Clip
                    stats.qk = report.metrics() if report is not None else {}
        return stats

    def evaluate(self, tasks: Sequence[Task] | None = None) -> dict[str, float]:
        """Greedy held-out success and mean score (``{}`` when there are no held-out tasks)."""
        return self.sampler.evaluate(tasks)

    def train(self, iterations: int | None = None, on_iteration: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Run ``iterations`` more iterations (default: up to ``config.run.iterations``)."""
        todo = iterations if iterations is not None else self.config.run.iterations - self.iteration_index
        history = []
        for _ in range(max(0, todo)):
            history.append(self.iteration())
            if on_iteration is not None:
                on_iteration(history[-1])
        return history

    def extra_state(self) -> dict[str, Any]:
        """Trainer state beyond model and optimizers, for checkpoints: the value model too."""
        return {"iteration": self.iteration_index, "generator": self.generator.get_state(), "value": self.value.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.iteration_index = int(state["iteration"])
        self.generator.set_state(state["generator"])
        self.value.load_state_dict(state["value"])

    def optimizers(self) -> dict[str, Any]:
        """Optimizers by name (checkpoints save each)."""
        return {"policy": self.optimizer, "value": self.value_optimizer}

    def close(self) -> None:
        self.sampler.close()


def accumulate(model: Any, value: ValueModel, minibatch: Batch, s: PPOSettings, micro_batch_size: int, *,
               ref_model: Any = None, shard: tuple[int, int] = (0, 1)) -> tuple[dict[str, float], SkipReason | None]:
    """Back-propagate the minibatch's PPO loss in micro-batches; returns (summed stats, skip reason or None).

    As in GRPO's ``accumulate``, every term is divided by the whole minibatch's counts, so the
    micro-batch losses sum to the minibatch's loss; a non-finite loss stops before its backward.
    """
    totals: Counter[str] = Counter()
    rank, world = shard  # a data-parallel rank runs micro-batches rank, rank + world, ... (the ranks' gradients are summed)
    for micro, share in micro_batches(minibatch, micro_batch_size)[rank::world]:
        if micro.returns is None or micro.old_values is None:
            raise ValueError("a PPO batch needs returns and old_values (PPOTrainer.build_batch fills them)")
        outputs = training_forward(model, micro.input_ids, micro.attention_mask, hidden=True)
        logits = outputs.logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
        logp = rl.token_logprobs(logits, micro.input_ids[:, 1:])  # (B, T-1)
        old = micro.old_logp[:, 1:]  # (B, T-1) behaviour log-probs
        mask = micro.loss_mask[:, 1:]  # (B, T-1) 1 on sampled tokens
        # The clipped surrogate with per-token GAE advantages.
        per_tok = rl.clipped_surrogate(logp, old, micro.advantages[:, 1:], mask, eps_low=s.clip_low, eps_high=s.clip_high)
        policy = rl.aggregate(per_tok, mask, s.aggregation, num_tokens=share.tokens, num_sequences=share.sequences)
        loss = policy
        stats = {m.POLICY_LOSS: float(policy.detach())}
        with torch.no_grad():  # diagnostics: token means over the minibatch
            ratio = torch.exp(logp - old)  # (B, T-1)
            outside = ((ratio < 1 - s.clip_low) | (ratio > 1 + s.clip_high)).float()
            stats[m.CLIP_FRAC] = float((outside * mask).sum() / share.tokens)
            stats[m.APPROX_KL] = float(rl.approx_kl(logp, old, mask).sum() / share.tokens)
            sampled = logits[mask.bool()][None]  # (1, N, V): only sampled positions, prompts are most of a row
            stats[m.ENTROPY] = float(rl.token_entropy(sampled).sum() / share.tokens)
        # k3 KL to the frozen initial policy.
        if s.kl_beta > 0 and ref_model is not None:
            with torch.no_grad():
                ref_logits = training_forward(ref_model, micro.input_ids, micro.attention_mask).logits[:, :-1]
                ref_logp = rl.token_logprobs(ref_logits, micro.input_ids[:, 1:])  # (B, T-1)
            kl = rl.aggregate(rl.kl_k3(logp, ref_logp), mask, "token", num_tokens=share.tokens)
            loss = loss + s.kl_beta * kl
            stats[m.KL] = float(kl.detach())
        # The MoE router balance loss (a metric only at weight 0) and the expert-load figures.
        aux, moe_stats = router_terms(model, outputs, micro.attention_mask, weight=s.aux_weight,
                                      routed=share.routed, rows=share.rows)
        if aux is not None and s.aux_weight > 0:
            loss = loss + s.aux_weight * aux
        stats.update(moe_stats)
        # The value loss, clipped around the rollout-time values when configured.
        values = value.values(outputs, micro.input_ids, micro.attention_mask)  # (B, T-1)
        old_values = micro.old_values[:, 1:] if s.value_clip is not None else None  # (B, T-1)
        per_tok_v = rl.value_loss(values, micro.returns[:, 1:], mask, old_values=old_values, clip=s.value_clip)
        vloss = rl.aggregate(per_tok_v, mask, "token", num_tokens=share.tokens)
        loss = loss + s.value_coef * vloss
        stats[m.VALUE_LOSS] = float(vloss.detach())
        stats[m.LOSS] = float(loss.detach())
        if not torch.isfinite(loss):
            return dict(totals), "nonfinite_loss"
        loss.backward()
        totals.update(stats)  # every stat is already a share of the minibatch's value
    return dict(totals), None
