"""Policy-gradient losses: the clipped surrogate, loss aggregation, k3 KL, the Kimi K1.5/K2
squared loss and the PPO value loss.

Every per-token function returns ``(B, T)`` with zeros where ``mask`` is 0, so padding and
environment tokens never contribute, whatever garbage their log-probs hold. ``aggregate`` turns
a per-token loss into the scalar to back-propagate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from toolgym.trainers.rl._checks import ndim, per_sequence, same_shape

if TYPE_CHECKING:
    from torch import Tensor

Aggregation = Literal["token", "sequence", "constant"]
"""How a per-token loss becomes one number: see :func:`aggregate`."""


def _masked_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """``logp - old_logp`` on masked positions, 0 elsewhere (never NaN from -inf padding)."""
    import torch

    ndim("logp", logp, 2, "(B, T)")
    same_shape("logp", logp, "old_logp", old_logp)
    same_shape("logp", logp, "mask", mask)
    keep = mask.bool()
    return torch.where(keep, logp - torch.where(keep, old_logp, logp).detach(), torch.zeros_like(logp))


def clipped_surrogate(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, eps_low: float = 0.2,
    eps_high: float | None = None,
) -> Tensor:
    """PPO/GRPO clipped surrogate per token: ``-min(ρA, clip(ρ, 1-eps_low, 1+eps_high) A)``.

    Args:
        logp: ``(B, T)`` log-probs of the taken tokens under the current policy (with grad).
        old_logp: ``(B, T)`` log-probs under the behaviour policy that sampled them.
        advantages: ``(B,)`` one per sequence (GRPO) or ``(B, T)`` per token (PPO/GAE).
        mask: ``(B, T)`` 1 on policy tokens, 0 on prompt, environment and padding tokens.
        eps_low: Lower clip range, the ratio is clipped at ``1 - eps_low``.
        eps_high: Upper clip range (DAPO "clip-higher" sets it above ``eps_low``); defaults to ``eps_low``.

    Returns:
        ``(B, T)`` loss per token, 0 where ``mask`` is 0.

    Example:
        >>> import torch
        >>> lp = torch.log(torch.tensor([[0.5, 0.9]]))
        >>> old = torch.log(torch.tensor([[0.25, 0.9]]))  # ratios 2.0 and 1.0
        >>> clipped_surrogate(lp, old, torch.tensor([1.0]), torch.ones(1, 2), eps_low=0.2, eps_high=0.3)
        tensor([[-1.3000, -1.0000]])
    """
    import torch

    eps_high = eps_low if eps_high is None else eps_high
    if eps_low < 0 or eps_high < 0 or eps_low >= 1:
        raise ValueError(f"clip ranges must satisfy 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    log_ratio = _masked_log_ratio(logp, old_logp, mask)  # (B, T)
    if advantages.ndim == 1:
        per_sequence("advantages", advantages, logp.shape[0])
        advantages = advantages[:, None]  # (B, 1) broadcasts over tokens
    else:
        same_shape("logp", logp, "advantages", advantages)
    adv = advantages.detach().to(logp.dtype)
    ratio = log_ratio.exp()  # (B, T)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    return torch.where(mask.bool(), -torch.minimum(unclipped, clipped), torch.zeros_like(logp))


def clip_fraction(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, eps_low: float = 0.2,
    eps_high: float | None = None,
) -> Tensor:
    """Fraction of masked tokens whose clipped term is the active one (their gradient is zero).

    A token counts when its ratio left the clip range on the side its advantage pushes:
    ``ρ > 1 + eps_high`` with ``A > 0``, or ``ρ < 1 - eps_low`` with ``A < 0``.

    Example:
        >>> import torch
        >>> lp, old = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.25, 0.5]]))
        >>> float(clip_fraction(lp, old, torch.tensor([1.0]), torch.ones(1, 2)))
        0.5
    """
    import torch

    eps_high = eps_low if eps_high is None else eps_high
    with torch.no_grad():
        ratio = _masked_log_ratio(logp, old_logp, mask).exp()  # (B, T)
        adv = advantages[:, None] if advantages.ndim == 1 else advantages
        active = ((ratio > 1 + eps_high) & (adv > 0)) | ((ratio < 1 - eps_low) & (adv < 0))  # (B, T)
        keep = mask.bool()
        return (active & keep).sum() / keep.sum().clamp(min=1)


def approx_kl(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """Per-token estimate of KL(π_old ‖ π) from tokens sampled by π_old: ``(ρ - 1) - log ρ``, ``ρ = π/π_old``.

    Schulman's k3 estimator with the roles of :func:`kl_k3` swapped (the rows were sampled by
    the behaviour policy): never negative, exactly 0 where the two log-probs agree. A
    diagnostic, computed without gradient; mask it with :func:`aggregate`.

    Args:
        logp: ``(B, T)`` current log-probs.
        old_logp: ``(B, T)`` behaviour log-probs of the same tokens.
        mask: ``(B, T)`` 1 on policy tokens.

    Returns:
        ``(B, T)`` float, 0 where ``mask`` is 0.

    Example:
        >>> import torch
        >>> approx_kl(torch.log(torch.tensor([[0.5, 0.2]])), torch.log(torch.tensor([[0.25, 0.2]])), torch.ones(1, 2))
        tensor([[0.3069, 0.0000]])
    """
    import torch

    with torch.no_grad():
        log_ratio = _masked_log_ratio(logp, old_logp, mask)  # (B, T), 0 off the mask
        return torch.expm1(log_ratio) - log_ratio  # expm1 keeps precision when the ratio is near 1


def aggregate(
    per_token: Tensor, mask: Tensor, mode: Aggregation = "token", *, constant: float | None = None,
    num_tokens: float | None = None, num_sequences: float | None = None,
) -> Tensor:
    """Reduce a ``(B, T)`` per-token loss to a scalar.

    Modes (TRL names in brackets):

    - ``"token"`` (bnpo/dapo): sum over all masked tokens / number of masked tokens;
    - ``"sequence"`` (grpo): mean over sequences of (sum over its tokens / its token count);
      sequences without a masked token are left out;
    - ``"constant"`` (dr_grpo): sum / (number of sequences * ``constant``), ``constant`` usually the
      maximum completion length, so no sequence's length changes the weight of its tokens.

    Gradient accumulation: pass the counts of the whole accumulated batch as ``num_tokens``
    (token mode) or ``num_sequences`` (sequence and constant modes); then the micro-batch
    losses sum to the loss of the whole batch, so 1x8 and 8x1 give the same gradient.

    Example:
        >>> import torch
        >>> loss = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]])
        >>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
        >>> float(aggregate(loss, mask, "token")), float(aggregate(loss, mask, "sequence"))
        (1.75, 2.5)
        >>> float(aggregate(loss, mask, "constant", constant=4))
        0.875
    """
    import torch

    ndim("per_token", per_token, 2, "(B, T)")
    same_shape("per_token", per_token, "mask", mask)
    weights = mask.to(per_token.dtype)  # (B, T)
    masked = per_token * weights
    if mode == "token":
        denom = weights.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=per_token.dtype)
        return masked.sum() / denom.clamp(min=1)
    if mode == "sequence":
        lengths = weights.sum(dim=1)  # (B,)
        per_seq = masked.sum(dim=1) / lengths.clamp(min=1)  # (B,)
        count = (lengths > 0).sum() if num_sequences is None else torch.as_tensor(num_sequences, dtype=per_token.dtype)
        return per_seq.sum() / count.clamp(min=1)
    if mode == "constant":
        if constant is None or constant <= 0:
            raise ValueError(f"aggregate mode 'constant' needs constant > 0 (e.g. the max completion length), got {constant}")
        sequences = per_token.shape[0] if num_sequences is None else num_sequences
        return masked.sum() / (max(sequences, 1) * constant)
    raise ValueError(f"aggregate mode must be 'token', 'sequence' or 'constant', got {mode!r}")


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π ‖ π_ref) per token: ``exp(d) - d - 1`` with ``d = ref_logp - logp``.

    Non-negative, 0 exactly where the two log-probs agree, unbiased for the KL when tokens are
    sampled from π. Mask it with :func:`aggregate`.

    Args:
        logp: ``(B, T)`` current log-probs (with grad).
        ref_logp: ``(B, T)`` reference-model log-probs of the same tokens.

    Returns:
        ``(B, T)`` k3 values.

    Example:
        >>> import torch
        >>> kl_k3(torch.tensor([[0.0, -1.0]]), torch.tensor([[0.0, 0.0]]))
        tensor([[0.0000, 0.7183]])
    """
    import torch

    same_shape("logp", logp, "ref_logp", ref_logp)
    d = ref_logp.detach() - logp  # (B, T)
    return torch.expm1(d) - d  # expm1 keeps precision when d is tiny


def group_mean(values: Tensor, group_index: Tensor) -> Tensor:
    """Mean of ``values`` over each sequence's group, broadcast back: ``(B,)`` -> ``(B,)``.

    Example:
        >>> import torch
        >>> group_mean(torch.tensor([1.0, 0.0, 4.0, 2.0]), torch.tensor([0, 0, 1, 1]))
        tensor([0.5000, 0.5000, 3.0000, 3.0000])
    """
    import torch

    per_sequence("group_index", group_index, values.shape[0])
    index = group_index.long()
    groups = int(index.max()) + 1 if index.numel() else 0
    sums = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, index, values)
    counts = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, index, torch.ones_like(values))
    return (sums / counts.clamp(min=1))[index]


def k2_squared_loss(
    logp: Tensor, old_logp: Tensor, rewards: Tensor, mask: Tensor, *, tau: float,
    group_index: Tensor | None = None, baseline: Tensor | None = None,
) -> Tensor:
    """Kimi K1.5/K2 policy loss per sequence: ``(r - r̄ - τ · Σ_t log(π/π_old))²``.

    ``r̄`` is the mean reward of the sequence's group (it stands in for ``τ log Z``); the sum runs
    over the sequence's masked tokens. The gradient of the group mean of this loss is
    ``-2τ/K · Σ_j [(r_j - r̄ - τ L_j) ∇L_j]`` with ``L_j`` the log-ratio, i.e. ``-2τ`` times the K1.5
    policy gradient ``1/K Σ_j [∇log π(y_j)(r_j - r̄) - τ/2 ∇L_j²]``.

    Args:
        logp: ``(B, T)`` current log-probs (with grad).
        old_logp: ``(B, T)`` log-probs of the policy that sampled the tokens.
        rewards: ``(B,)`` one reward per sequence.
        mask: ``(B, T)`` 1 on policy tokens.
        tau: Weight of the KL-like log-ratio term (> 0).
        group_index: ``(B,)`` group of each sequence; the baseline is its group's mean reward.
        baseline: ``(B,)`` explicit baseline instead of ``group_index``.

    Returns:
        ``(B,)`` loss per sequence; average it over sequences for the K1.5 objective.

    Example:
        >>> import torch
        >>> lp = torch.zeros(2, 1)
        >>> k2_squared_loss(lp, lp, torch.tensor([1.0, 0.0]), torch.ones(2, 1), tau=0.1, group_index=torch.tensor([0, 0]))
        tensor([0.2500, 0.2500])
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    per_sequence("rewards", rewards, logp.shape[0])
    if (group_index is None) == (baseline is None):
        raise ValueError("k2_squared_loss needs exactly one of group_index= (group-mean baseline) or baseline=")
    if baseline is None:
        assert group_index is not None  # exactly one of the two was given (checked above)
        baseline = group_mean(rewards.to(logp.dtype), group_index)
    per_sequence("baseline", baseline, logp.shape[0])
    log_ratio = _masked_log_ratio(logp, old_logp, mask).sum(dim=1)  # (B,)
    return (rewards.to(logp.dtype) - baseline.detach().to(logp.dtype) - tau * log_ratio) ** 2


def value_loss(
    values: Tensor, returns: Tensor, mask: Tensor, *, old_values: Tensor | None = None, clip: float | None = None,
) -> Tensor:
    """PPO value loss per token: ``½ (V - R)²``, optionally clipped around the old values.

    With ``clip``, the loss is ``½ max((V - R)², (V_old + clip(V - V_old, ±clip) - R)²)``, so a
    value update that moves far from ``V_old`` gets no extra credit.

    Args:
        values: ``(B, T)`` value predictions (with grad).
        returns: ``(B, T)`` regression targets (e.g. from :func:`toolgym.trainers.rl.gae`).
        mask: ``(B, T)`` 1 on positions that count.
        old_values: ``(B, T)`` values at rollout time; required with ``clip``.
        clip: Clip range for the value change.

    Returns:
        ``(B, T)`` loss per token, 0 where ``mask`` is 0.

    Example:
        >>> import torch
        >>> value_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[1, 0]]))
        tensor([[0.5000, 0.0000]])
    """
    import torch

    ndim("values", values, 2, "(B, T)")
    same_shape("values", values, "returns", returns)
    same_shape("values", values, "mask", mask)
    target = returns.detach()
    loss = (values - target) ** 2
    if clip is not None:
        if old_values is None:
            raise ValueError("value_loss with clip= needs old_values= (the values at rollout time)")
        same_shape("values", values, "old_values", old_values)
        old = old_values.detach()
        clipped = old + (values - old).clamp(-clip, clip)
        loss = torch.maximum(loss, (clipped - target) ** 2)
    return torch.where(mask.bool(), 0.5 * loss, torch.zeros_like(loss))
