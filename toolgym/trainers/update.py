"""The policy-update step shared by GRPO and PPO: rows in, one or more optimizer steps out.

One call of ``update_policy`` does, for each minibatch of rows:

1. for each micro-batch: a training forward (router logits on), token log-probs of the row's
   own ids, the selected policy loss (grpo / dapo / dr_grpo / k2), the k3 KL to a reference,
   the MoE router balance loss (a mean of per-sequence terms) and, for PPO, the value loss; each
   term is divided by the minibatch's count (tokens or sequences), so accumulating 8
   micro-batches of 1 row gives the gradient of one micro-batch of 8 rows, with every term on;
2. the PTX loss on one supervised batch, when configured;
3. the gradient norm; non-finite losses or gradients, and gradients above
   ``skip_grad_norm``, skip the step with a counted reason instead of corrupting the weights;
4. clipping, the optimizer step, and QK-Clip after it.

The math itself (log-probs, surrogate, aggregation, KL, K2 loss, value loss) lives in
``toolgym.trainers.rl``; the router terms in ``toolgym.trainers.moe``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from toolgym.trainers import rl
from toolgym.trainers.config import LossKind, TrainConfig

_log = logging.getLogger(__name__)

ValueFn = Callable[[Any, "Batch"], torch.Tensor]
"""``(policy_outputs, batch) -> values (B, T-1)``: the value function used by PPO."""

_AGGREGATION: dict[str, rl.Aggregation] = {"grpo": "sequence", "dapo": "token", "dr_grpo": "constant"}


@dataclass
class Batch:
    """Right-padded training tensors; every per-token tensor is aligned with ``input_ids``.

    ``advantages`` is (B,) for group objectives or (B, T) per token (PPO); ``returns`` and
    ``old_values`` are (B, T) and only set for PPO. ``baselines`` is the group-mean reward (K2).
    """

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    loss_mask: torch.Tensor  # (B, T) float, 1 on sampled tokens
    old_logp: torch.Tensor  # (B, T) behaviour log-probs, 0 off the mask
    advantages: torch.Tensor  # (B,) or (B, T)
    rewards: torch.Tensor  # (B,)
    baselines: torch.Tensor  # (B,)
    returns: torch.Tensor | None = None  # (B, T)
    old_values: torch.Tensor | None = None  # (B, T)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, index: torch.Tensor) -> Batch:
        """The rows at ``index``, trimmed to their longest real length."""
        width = int(self.attention_mask[index].sum(dim=1).max())
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
                continue
            value = value[index]
            out[f.name] = value[:, :width] if value.dim() == 2 else value
        return Batch(**out)

    @property
    def tokens(self) -> float:
        """Loss-masked tokens that predict something (the first position predicts nothing)."""
        return float(self.loss_mask[:, 1:].sum())


def make_batch(rows: Sequence[Any], pad_id: int, *, advantages: Sequence[float], rewards: Sequence[float],
               baselines: Sequence[float] | None = None) -> Batch:
    """A ``Batch`` from ``TokenRow``s and one advantage, reward and baseline per row."""
    from toolgym.rollouts.rows import collate

    t = collate(rows, pad_id)
    zeros = [0.0] * len(rows)
    return Batch(
        input_ids=t["input_ids"], attention_mask=t["attention_mask"], loss_mask=t["loss_mask"],
        old_logp=t["behaviour_logprobs"], advantages=torch.tensor(list(advantages), dtype=torch.float32),
        rewards=torch.tensor(list(rewards), dtype=torch.float32),
        baselines=torch.tensor(list(baselines or zeros), dtype=torch.float32),
    )


@dataclass
class LossSettings:
    """The loss terms of one update, taken from a ``TrainConfig``."""

    loss: LossKind = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.2
    k2_tau: float = 0.1
    constant: float = 64.0
    """Dr. GRPO's normalizing length."""
    kl_beta: float = 0.0
    aux_weight: float = 0.0
    value_coef: float = 0.0
    ptx_weight: float = 0.0
    max_grad_norm: float = 1.0
    skip_grad_norm: float = 1e4

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LossSettings:
        a, o = cfg.algorithm, cfg.optim
        constant = a.dr_grpo_constant or cfg.rollout.token_budget or cfg.rollout.max_new_tokens
        return cls(
            loss=a.loss, clip_low=a.clip_low, clip_high=a.clip_high, k2_tau=a.k2_tau, constant=float(constant),
            kl_beta=a.kl_beta, aux_weight=a.aux_loss_weight, value_coef=a.value_coef if a.name == "ppo" else 0.0,
            ptx_weight=cfg.ptx.weight, max_grad_norm=o.max_grad_norm, skip_grad_norm=o.skip_grad_norm,
        )


@dataclass
class UpdateStats:
    """Sums over one update call; ``metrics()`` turns them into named means."""

    sums: Counter = field(default_factory=Counter)
    steps: int = 0
    skipped: Counter = field(default_factory=Counter)
    grad_norms: list[float] = field(default_factory=list)
    qk: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Per-minibatch means of the loss terms, step counts, skip reasons, QK-Clip figures."""
        from toolgym.trainers import metrics as m

        n = max(1, self.sums["minibatches"])
        out = {key: value / n for key, value in self.sums.items() if key != "minibatches"}
        out[m.STEPS] = float(self.steps)
        out[m.GRAD_NORM] = sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else math.nan
        for reason, count in self.skipped.items():
            out[m.SKIPPED_PREFIX + reason] = float(count)
        return {**out, **self.qk}


def forward(model: Any, batch: Batch, *, hidden: bool = False) -> Any:
    """The training forward: router logits on (for the aux loss), hidden states when asked."""
    kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
    if hasattr(model.config, "output_router_logits"):
        kwargs["output_router_logits"] = True
    if hidden:
        kwargs["output_hidden_states"] = True
    return model(**kwargs)


@dataclass(frozen=True)
class Share:
    """What a micro-batch is part of: the minibatch's counts, so micro losses sum to its loss."""

    tokens: float
    """Sampled tokens in the whole minibatch (token-mean terms)."""
    sequences: float
    """Rows with at least one sampled token in the whole minibatch (per-sequence terms)."""
    rows: float
    """This micro-batch's fraction of the minibatch's rows (metrics that are statistics of one forward)."""
    routed: float
    """Rows with at least one attended token in the whole minibatch (the per-sequence router balance loss)."""


def minibatch_share(minibatch: Batch, micro: Batch) -> Share:
    """The ``Share`` of ``micro`` within ``minibatch``."""
    from toolgym.trainers.moe import routed_sequences

    sequences = float((minibatch.loss_mask[:, 1:].sum(dim=1) > 0).sum())
    routed = float(routed_sequences(minibatch.attention_mask))
    return Share(tokens=max(minibatch.tokens, 1.0), sequences=max(sequences, 1.0), rows=len(micro) / len(minibatch),
                 routed=max(routed, 1.0))


def micro_loss(model: Any, micro: Batch, s: LossSettings, share: Share, *, ref_model: Any = None,
               value_fn: ValueFn | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one micro-batch, already scaled by its share of the minibatch.

    Summing the returned losses over a minibatch's micro-batches gives the loss of the whole
    minibatch computed at once, router balance loss included (it is a sum of per-sequence terms
    divided by the minibatch's sequence count).
    """
    from toolgym.trainers import metrics as m
    from toolgym.trainers.moe import expert_load_metrics, router_spec, sequence_balance_losses

    outputs = forward(model, micro, hidden=value_fn is not None)
    logp = rl.token_logprobs(outputs.logits[:, :-1], micro.input_ids[:, 1:])  # (B, T-1)
    mask = micro.loss_mask[:, 1:]  # (B, T-1)
    old = micro.old_logp[:, 1:]  # (B, T-1)
    if s.loss == "k2":
        per_seq = rl.k2_squared_loss(logp, old, micro.rewards, mask, tau=s.k2_tau, baseline=micro.baselines)  # (B,)
        policy = per_seq.sum() / share.sequences
    else:
        adv = micro.advantages[:, 1:] if micro.advantages.dim() == 2 else micro.advantages  # (B,) or (B, T-1)
        per_tok = rl.clipped_surrogate(logp, old, adv, mask, eps_low=s.clip_low, eps_high=s.clip_high)  # (B, T-1)
        policy = rl.aggregate(per_tok, mask, _AGGREGATION[s.loss], constant=s.constant,
                              num_tokens=share.tokens, num_sequences=share.sequences)
    total = policy
    stats = {m.POLICY_LOSS: float(policy.detach())}
    with torch.no_grad():
        ratio = torch.exp(logp - old)
        outside = ((ratio < 1 - s.clip_low) | (ratio > 1 + s.clip_high)).float()
        stats[m.CLIP_FRAC] = float((outside * mask).sum() / share.tokens)
    if s.kl_beta > 0 and ref_model is not None:
        with torch.no_grad():
            ref_logp = rl.token_logprobs(forward(ref_model, micro).logits[:, :-1], micro.input_ids[:, 1:])  # (B, T-1)
        kl = rl.aggregate(rl.kl_k3(logp, ref_logp), mask, "token", num_tokens=share.tokens)
        total = total + s.kl_beta * kl
        stats[m.KL] = float(kl.detach())
    router_logits: Sequence[torch.Tensor] = getattr(outputs, "router_logits", None) or ()
    spec = router_spec(model) if router_logits else None
    if spec is not None:
        with torch.set_grad_enabled(s.aux_weight > 0):  # weight 0: only the metric, no graph
            aux = sequence_balance_losses(router_logits, spec, mask=micro.attention_mask).sum() / share.routed  # ()
        if s.aux_weight > 0:
            total = total + s.aux_weight * aux
        stats[m.AUX_LOSS] = float(aux.detach())  # this micro-batch's exact share of the minibatch's loss
        # The load figures are statistics of one forward: averaged over micro-batches by rows.
        for key, value in expert_load_metrics(router_logits, spec, mask=micro.attention_mask, include_aux=False).items():
            stats[key] = value * share.rows
    if value_fn is not None and micro.returns is not None:
        values = value_fn(outputs, micro)  # (B, T-1)
        per_tok_v = rl.value_loss(values, micro.returns[:, 1:], mask)  # (B, T-1)
        vloss = rl.aggregate(per_tok_v, mask, "token", num_tokens=share.tokens)
        total = total + s.value_coef * vloss
        stats[m.VALUE_LOSS] = float(vloss.detach())
    stats[m.LOSS] = float(total.detach())
    return total, stats


def accumulate(model: Any, minibatch: Batch, s: LossSettings, micro_batch_size: int, *, ref_model: Any = None,
               value_fn: ValueFn | None = None) -> tuple[dict[str, float], str | None]:
    """Back-propagate the minibatch's loss in micro-batches; returns (stats, skip reason or None).

    Gradients accumulate into ``.grad``; a non-finite micro-batch loss stops early with reason
    ``nonfinite_loss`` (the caller zeroes the gradients).
    """
    index = torch.arange(len(minibatch))
    totals: Counter = Counter()
    for i in range(0, len(minibatch), micro_batch_size):
        micro = minibatch.select(index[i : i + micro_batch_size])
        loss, stats = micro_loss(model, micro, s, minibatch_share(minibatch, micro), ref_model=ref_model, value_fn=value_fn)
        if not torch.isfinite(loss):
            return dict(totals), "nonfinite_loss"
        loss.backward()
        totals.update(stats)  # every stat is already a share of the minibatch's value
    return dict(totals), None


def ptx_backward(model: Any, batch: Batch, weight: float) -> float:
    """Supervised next-token loss on ``batch``'s masked tokens (SFT's loss), back-propagated with ``weight``."""
    from toolgym.trainers.sft import masked_lm_loss

    labels = batch.input_ids.masked_fill(batch.loss_mask == 0, -100)  # (B, T): only masked tokens are targets
    nll, count = masked_lm_loss(model, batch.input_ids, batch.attention_mask, labels)
    if count == 0:
        return 0.0  # nothing supervised in this batch
    if torch.isfinite(nll):
        (weight * nll).backward()
    return float(nll.detach())


def update_policy(
    model: Any, optimizer: Any, batch: Batch, s: LossSettings, *, minibatch_size: int, micro_batch_size: int,
    epochs: int = 1, generator: torch.Generator | None = None, params: Sequence[torch.nn.Parameter] | None = None,
    ref_model: Any = None, value_fn: ValueFn | None = None, ptx_batches: Sequence[Batch] = (),
    after_step: Callable[[], dict[str, float]] | None = None,
) -> UpdateStats:
    """Run ``epochs`` passes of minibatch steps over ``batch``.

    Args:
        model: The policy (train mode is set here).
        optimizer: A torch optimizer, or a list of them (policy and value), stepped together.
        batch: The iteration's rows.
        s: Loss settings.
        minibatch_size: Rows per optimizer step.
        micro_batch_size: Rows per forward/backward.
        epochs: Passes over the rows (shuffled with ``generator``).
        params: Parameters whose gradient norm is measured and clipped (default: all of the
            optimizer's).
        ref_model: Frozen reference for the KL term.
        value_fn: PPO's value function (outputs, micro-batch) -> (B, T-1).
        ptx_batches: Supervised batches, one per optimizer step, cycled.
        after_step: Called after each optimizer step (QK-Clip); its dict is kept as metrics.
    """
    from toolgym.trainers import metrics as m

    model.train()
    optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    params = list(params) if params is not None else [p for o in optimizers for g in o.param_groups for p in g["params"]]
    stats = UpdateStats()
    ptx_i = 0
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator)
        for start in range(0, len(batch), minibatch_size):
            minibatch = batch.select(order[start : start + minibatch_size])
            _zero(optimizers)
            sums, reason = accumulate(model, minibatch, s, micro_batch_size, ref_model=ref_model, value_fn=value_fn)
            if reason is None and s.ptx_weight > 0 and ptx_batches:
                sums[m.PTX_LOSS] = ptx_backward(model, ptx_batches[ptx_i % len(ptx_batches)], s.ptx_weight)
                ptx_i += 1
            stats.sums["minibatches"] += 1
            stats.sums.update(sums)
            reason = reason or _step_or_skip(optimizers, params, s, stats)
            if reason is not None:
                _log.warning("skipped an optimizer step: %s (loss %s)", reason, sums.get(m.LOSS))
                stats.skipped[reason] += 1
                _zero(optimizers)
                continue
            if after_step is not None:
                stats.qk = after_step()
    return stats


def _zero(optimizers: Sequence[Any]) -> None:
    for o in optimizers:
        o.zero_grad(set_to_none=True)


def _step_or_skip(optimizers: Sequence[Any], params: Sequence[torch.nn.Parameter], s: LossSettings, stats: UpdateStats) -> str | None:
    """Clip and step, or return why the step must be skipped."""
    norm = float(torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm))
    if not math.isfinite(norm):
        return "nonfinite_grad"
    if norm > s.skip_grad_norm:
        return "exploding_grad"
    stats.grad_norms.append(norm)
    for o in optimizers:
        o.step()
    stats.steps += 1
    return None


