"""GRPO (and DAPO, Dr. GRPO and the Kimi K2 objective) on a local MoE policy, read top to bottom.

One iteration (``GRPOTrainer.iteration``):

1. **rollouts**: the iteration's tasks (the data position is the iteration index, so a
   resumed run draws the same tasks), K siblings each, sampled by the policy itself;
2. **scores**: the rubric judges every episode; unscorable episodes are dropped and counted,
   never scored 0; over-budget episodes are cut and penalized (``experience.collect``);
3. **advantages**: each sibling's reward relative to its group (divided by the group std for
   GRPO, not for Dr. GRPO); groups with fewer than two scorable siblings are dropped and
   zero-variance groups counted (and filtered when configured) -> a typed ``Batch``;
4. **update** (``update_policy``): ``epochs`` shuffled passes over the rows; one optimizer step
   per minibatch, accumulated over micro-batches (``accumulate``, where the loss is written:
   policy objective, k3 KL, router balance loss), then the PTX loss and the shared optimizer
   step (``toolgym.trainers.step``: clip, skip non-finite or exploding, step, QK-Clip).

The math is pure functions in ``toolgym.trainers.rl``; the router terms are in
``toolgym.trainers.moe``; metric names in ``toolgym.trainers.metrics``.

Example (used by the demo and ``toolgym train``):

    cfg = TrainConfig.from_yaml("examples/configs/grpo_tiny.yaml")
    model, tokenizer = load_policy(cfg)          # toolgym.trainers.run
    trainer = GRPOTrainer(cfg, model, tokenizer)
    for _ in range(cfg.run.iterations):
        print(trainer.iteration())
    print(trainer.evaluate())
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
from toolgym.rollouts.loop import EnvSource
from toolgym.trainers import metrics as m
from toolgym.trainers import rl
from toolgym.trainers.batch import Batch, make_batch, micro_batches, ptx_batches
from toolgym.trainers.config import LossKind, TrainConfig
from toolgym.trainers.critic_loop import CriticLoop
from toolgym.trainers.experience import Collected, Sampler, TaskSource, collect, iteration_metrics, seed_everything
from toolgym.trainers.moe import router_terms, training_forward
from toolgym.trainers.optim import build_optimizer
from toolgym.trainers.routing import check_replayable, routing_terms, routing_trace
from toolgym.trainers.sft import ptx_backward
from toolgym.trainers.step import OptimizerStep, SkipReason, UpdateStats
from toolgym.trainers.value import frozen_copy

_AGGREGATION: dict[str, rl.Aggregation] = {"grpo": "sequence", "dapo": "token", "dr_grpo": "constant"}


@dataclass
class LossSettings:
    """The loss terms of one update, taken from a ``TrainConfig``."""

    loss: LossKind = "grpo"
    """Which policy objective (see ``LossKind``)."""
    clip_low: float = 0.2
    """Ratio clip below: ``1 - clip_low``."""
    clip_high: float = 0.2
    """Ratio clip above: ``1 + clip_high``."""
    k2_tau: float = 0.1
    """τ of the K2 squared loss."""
    constant: float = 64.0
    """Dr. GRPO's normalizing length."""
    kl_beta: float = 0.0
    """Weight of the k3 KL to the reference model."""
    aux_weight: float = 0.0
    """Weight of the router balance loss."""
    ptx_weight: float = 0.0
    """Weight of the supervised PTX loss."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    skip_grad_norm: float = 1e4
    """A larger pre-clip norm skips the step."""
    importance: rl.Correction = "none"
    """Importance correction of tokens sampled by another policy version or engine (``rl.importance``)."""
    importance_cap: float = 2.0
    """C of the importance correction."""
    routing_replay: bool = False
    """Force the experts recorded at generation in the training forward (``toolgym.trainers.routing``)."""

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LossSettings:
        a, o = cfg.algorithm, cfg.optim
        constant = a.dr_grpo_constant or cfg.rollout.token_budget or cfg.rollout.max_new_tokens
        return cls(
            loss=a.loss, clip_low=a.clip_low, clip_high=a.clip_high, k2_tau=a.k2_tau, constant=float(constant),
            kl_beta=a.kl_beta, aux_weight=a.aux_loss_weight, ptx_weight=cfg.ptx.weight,
            max_grad_norm=o.max_grad_norm, skip_grad_norm=o.skip_grad_norm, importance=a.importance,
            importance_cap=a.importance_cap, routing_replay=a.routing_replay,
        )


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
        self.config, self.model, self.tokenizer = config, model, tokenizer
        if config.algorithm.routing_replay:  # a dense or unknown MoE model fails here, before any rollout
            check_replayable(model)
        self.sampler = Sampler(config, model, tokenizer, env=env, rubric=rubric, critics=critics, tasks=tasks, heldout=heldout)
        """The generation half: tasks, rollouts, rubric scores, held-out evaluation."""
        o = config.optim
        self.optimizer = build_optimizer(model, kind=o.kind, lr=o.lr, weight_decay=o.weight_decay,
                                         qk_clip_tau=o.qk_clip_tau if o.kind == "muonclip" else None)
        self.step = OptimizerStep([self.optimizer], max_grad_norm=o.max_grad_norm, skip_grad_norm=o.skip_grad_norm)
        self.ref_model = frozen_copy(model) if config.algorithm.kl_beta > 0 else None
        self.settings = LossSettings.from_config(config)
        self.ptx_batches = ptx_batches(ptx_rows or [], self.sampler.pad_id, config.ptx.batch_size)
        self.generator = torch.Generator().manual_seed(config.run.seed)
        """Shuffles the rows into minibatches; saved in checkpoints."""
        self.iteration_index = 0
        """Iterations done; also the data position (tasks drawn = index x tasks_per_iteration)."""
        self.shard = (0, 1)
        """(rank, world) of a data-parallel learner: it back-propagates every world-th micro-batch."""
        self.critic_loop = CriticLoop(config, self.sampler) if config.critic.outcome is not None else None
        """The closed-loop critic: checked against verified outcomes every iteration, trained when configured."""
        seed_everything(config.run.seed)

    def iteration(self) -> dict[str, float]:
        """One RL iteration: rollouts, scores, advantages, update. Returns its metrics."""
        cfg, i, k = self.config, self.iteration_index, self.config.algorithm.group_size
        temperature = cfg.temperature_at(i)
        t0 = time.perf_counter()
        # 1. rollouts: K siblings per task (>> 33: a 31-bit seed, so reset seeds stay small ints)
        episodes = self.sampler.rollout(self.sampler.tasks(i), group_size=k, temperature=temperature,
                                        seed=seed_from(cfg.run.seed, "train", i) >> 33)
        t1 = time.perf_counter()
        # 2. scores, then rows per scorable episode (budget cuts and penalties applied)
        scores = self.sampler.score(episodes)
        t2 = time.perf_counter()
        collected = collect(episodes, scores, k, budget=cfg.rollout.token_budget, penalty=cfg.algorithm.budget_penalty)
        # 3. advantages
        batch, counts = self.build_batch(collected)
        critic: dict[str, float] = {}
        if self.critic_loop is not None:  # check the critic on verified pairs; mix in critic rows when training it
            batch, critic = self.critic_loop.step(i, episodes, scores, batch)
        # 4. update, at this iteration's learning rate
        self.step.set_lr_factor(cfg.lr_factor_at(i))
        stats = self.update(batch) if batch is not None else {}
        if self.critic_loop is not None and batch is not None:  # critic.extra_updates: critic-only updates after the joint one
            critic.update(self.critic_loop.extra_updates(i, self.update))
        t3 = time.perf_counter()
        self.iteration_index += 1
        return {m.ITERATION: float(i), m.TEMPERATURE: temperature, m.LR: self.step.lr, **counts, **stats, **critic,
                **iteration_metrics(episodes, collected, rollout_s=t1 - t0, scoring_s=t2 - t1, update_s=t3 - t2)}

    def build_batch(self, collected: Collected) -> tuple[Batch | None, dict[str, float]]:
        """Group-relative advantages for the rows of every group that can teach something."""
        return build_batch(collected, self.config, self.sampler.pad_id)

    def update(self, batch: Batch) -> dict[str, float]:
        """Minibatch updates over the iteration's rows; returns the update metrics."""
        o = self.config.optim
        return update_policy(
            self.model, self.step, batch, self.settings, minibatch_size=o.minibatch_size,
            micro_batch_size=o.micro_batch_size, epochs=o.epochs, generator=self.generator, ref_model=self.ref_model,
            ptx_batches=self.ptx_batches, after_step=self._qk_report, shard=self.shard,
        ).metrics()

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
        """Trainer state beyond model and optimizer, for checkpoints."""
        critic = self.critic_loop.state() if self.critic_loop is not None else None
        return {"iteration": self.iteration_index, "generator": self.generator.get_state(), "critic": critic}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.iteration_index = int(state["iteration"])
        self.generator.set_state(state["generator"])
        if self.critic_loop is not None and state.get("critic") is not None:
            self.critic_loop.load_state(state["critic"])

    def optimizers(self) -> dict[str, Any]:
        """Optimizers by name (checkpoints save each)."""
        return {"policy": self.optimizer}

    def close(self) -> None:
        self.sampler.close()

    def _qk_report(self) -> dict[str, float]:
        # MuonClip runs QK-Clip inside its step and keeps what it saw.
        report = getattr(self.optimizer, "last_qk_report", None)
        return report.metrics() if report is not None else {}


def build_batch(collected: Collected, config: TrainConfig, pad_id: int) -> tuple[Batch | None, dict[str, float]]:
    """Group-relative advantages for the rows of every group that can teach something, and the group counts."""
    a = config.algorithm
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
        adv = rl.group_advantages(r, scale_by_std=config.scale_by_std)[0]  # (K,)
        mean = float(r.mean())  # K2's baseline
        for scored, advantage in zip(group, adv.tolist(), strict=True):
            for row in scored.rows:  # every row of an episode carries the episode's advantage
                rows.append(row)
                advantages.append(advantage)
                rewards.append(scored.reward)
                baselines.append(mean)
    counts = {m.GROUPS: float(len(collected.groups)), m.GROUPS_DROPPED: float(dropped),
              m.ZERO_VARIANCE_GROUPS: float(zero_var), m.ROWS: float(len(rows)),
              m.TOKENS: float(sum(sum(row.loss_mask) for row in rows))}
    if not rows:
        return None, counts
    return make_batch(rows, pad_id, advantages=advantages, rewards=rewards, baselines=baselines), counts


def update_policy(
    model: Any, step: OptimizerStep | Any, batch: Batch, s: LossSettings, *, minibatch_size: int,
    micro_batch_size: int, epochs: int = 1, generator: torch.Generator | None = None, ref_model: Any = None,
    ptx_batches: Sequence[Batch] = (), after_step: Callable[[], dict[str, float]] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> UpdateStats:
    """Run ``epochs`` shuffled passes of minibatch steps over ``batch``.

    Args:
        model: The policy (train mode is set here).
        step: The shared ``OptimizerStep``, or a torch optimizer (stepped with ``s``'s clip and skip norms).
        batch: The iteration's rows.
        s: Loss settings.
        minibatch_size: Rows per optimizer step.
        micro_batch_size: Rows per forward/backward.
        epochs: Passes over the rows (shuffled with ``generator``).
        generator: The shuffling RNG.
        ref_model: Frozen reference for the KL term.
        ptx_batches: Supervised batches, one per optimizer step, cycled.
        after_step: Called after each optimizer step (QK-Clip); its dict is kept as metrics.
        shard: ``(rank, world)`` of a data-parallel learner: it runs micro-batches ``rank, rank + world, ...``
            of each minibatch (``step`` sums the gradients over the ranks).
    """
    if not isinstance(step, OptimizerStep):
        step = OptimizerStep(step if isinstance(step, (list, tuple)) else [step], max_grad_norm=s.max_grad_norm,
                             skip_grad_norm=s.skip_grad_norm)
    step.reset_counts()
    if s.importance != "none":  # π_prox: the weights before this update's first step
        batch.prox_logp = proximal_logprobs(model, batch, micro_batch_size, replay=s.routing_replay)
    model.train()
    stats = UpdateStats(step)
    ptx_i = 0
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator)
        for start in range(0, len(batch), minibatch_size):
            minibatch = batch.select(order[start : start + minibatch_size])
            step.zero_grad()
            sums, reason = accumulate(model, minibatch, s, micro_batch_size, ref_model=ref_model, shard=shard)
            if reason is None and s.ptx_weight > 0 and ptx_batches:
                sums[m.PTX_LOSS] = ptx_backward(model, ptx_batches[ptx_i % len(ptx_batches)], s.ptx_weight)
                ptx_i += 1
            stats.add(sums)
            if reason is not None:
                step.skip(reason, f"(loss {sums.get(m.LOSS)})")
            elif step.step() is None and after_step is not None:
                stats.qk = after_step()
    return stats


def accumulate(model: Any, minibatch: Batch, s: LossSettings, micro_batch_size: int, *,
               ref_model: Any = None, shard: tuple[int, int] = (0, 1)) -> tuple[dict[str, float], SkipReason | None]:
    """Back-propagate the minibatch's loss in micro-batches; returns (summed stats, skip reason or None).

    Every term is divided by the whole minibatch's count (tokens or sequences, ``Share``), so
    the micro-batch losses sum to the loss of the minibatch computed at once: 8 micro-batches
    of 1 row give the gradient of 1 of 8. A non-finite micro-batch loss stops before its
    backward with reason ``nonfinite_loss`` (the caller drops the gradients).
    """
    totals: Counter[str] = Counter()
    rank, world = shard
    for micro, share in micro_batches(minibatch, micro_batch_size)[rank::world]:
        with routing_trace(model, micro.routed_experts, replay=s.routing_replay) as trace:  # no-op without records
            outputs = training_forward(model, micro.input_ids, micro.attention_mask)
        logits = outputs.logits[:, :-1]  # (B, T-1, V): position t predicts token t+1
        logp = rl.token_logprobs(logits, micro.input_ids[:, 1:])  # (B, T-1)
        old = micro.old_logp[:, 1:]  # (B, T-1) behaviour log-probs
        mask = micro.loss_mask[:, 1:]  # (B, T-1) 1 on sampled tokens
        weight, is_stats = importance(micro, mask, s, share.tokens)  # (B, T-1) 1 without a correction
        if micro.prox_logp is not None:  # decoupled PPO: clip against the learner's own pre-update policy
            old = micro.prox_logp[:, 1:]
        # The policy objective: the K2 squared loss per sequence, or the clipped surrogate per token.
        if s.loss == "k2":
            per_seq = rl.k2_squared_loss(logp, old, micro.rewards, mask, tau=s.k2_tau, baseline=micro.baselines)  # (B,)
            policy = per_seq.sum() / share.sequences
        else:
            adv = micro.advantages[:, 1:] if micro.advantages.dim() == 2 else micro.advantages  # (B,) or (B, T-1)
            per_tok = rl.clipped_surrogate(logp, old, adv, mask, eps_low=s.clip_low, eps_high=s.clip_high) * weight  # (B, T-1)
            policy = rl.aggregate(per_tok, mask, _AGGREGATION[s.loss], constant=s.constant,
                                  num_tokens=share.tokens, num_sequences=share.sequences)
        loss = policy
        stats = {m.POLICY_LOSS: float(policy.detach()), **is_stats}
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
        stats.update(routing_terms(model, micro, trace, logp, replay=s.routing_replay, rows=share.rows))
        stats[m.LOSS] = float(loss.detach())
        if not torch.isfinite(loss):
            return dict(totals), "nonfinite_loss"
        loss.backward()
        totals.update(stats)  # every stat is already a share of the minibatch's value
    return dict(totals), None


def proximal_logprobs(model: Any, batch: Batch, micro_batch_size: int, *, replay: bool = False) -> torch.Tensor:
    """``(B, T)`` the model's log-prob of every token (0 at position 0), without gradient: π_prox (routing replayed if asked)."""
    out = torch.zeros_like(batch.old_logp)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(batch), micro_batch_size):
            ids = batch.input_ids[start : start + micro_batch_size]
            routed = batch.routed_experts[start : start + micro_batch_size] if batch.routed_experts is not None else None
            with routing_trace(model, routed if replay else None, replay=True):
                logits = training_forward(model, ids, batch.attention_mask[start : start + micro_batch_size]).logits[:, :-1]
            out[start : start + micro_batch_size, 1:] = rl.token_logprobs(logits, ids[:, 1:])  # (b, T-1)
    return out


def importance(micro: Batch, mask: torch.Tensor, s: LossSettings, tokens: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token weights of ``s.importance`` and the train-inference metrics (token means over the minibatch)."""
    if micro.prox_logp is None:
        return torch.ones_like(mask), {}
    prox, behaviour = micro.prox_logp[:, 1:], micro.old_logp[:, 1:]  # (B, T-1)
    weight = rl.importance_weights(prox, behaviour, mask, kind=s.importance, cap=s.importance_cap)
    hit = rl.corrected_tokens(prox, behaviour, mask, kind=s.importance, cap=s.importance_cap)
    return weight, {
        m.IS_LOGPROB_GAP: float(rl.logprob_gap(prox, behaviour, mask).sum() / tokens),
        m.IS_KL: float(rl.behaviour_kl(prox, behaviour, mask).sum() / tokens),
        m.IS_CORRECTED_FRAC: float(hit.sum() / tokens),
    }
