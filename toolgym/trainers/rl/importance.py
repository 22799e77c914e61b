"""Importance corrections for tokens the learner's policy did not sample itself.

In an RL system the tokens of a batch come from an inference engine (another process, maybe
another numerics stack) and, in asynchronous mode, from weights up to ``max_staleness`` updates
old. The learner's own log-prob of a token before the update (π_prox, "proximal") then differs
from the behaviour log-prob the engine reported (π_behaviour). Two corrections weigh each
token by ``ρ = π_prox / π_behaviour``:

* **truncated** IS: weight ``min(ρ, C)`` (large ratios cannot blow up the gradient);
* **masked** IS: weight 1 when ``1/C <= ρ <= C``, else 0 (the token is dropped).

The clipped surrogate then uses π_prox as its "old" policy (decoupled PPO), so its clip
bounds the update's step, while the weight accounts for who sampled the token.

Every function is pure, works on ``(B, T)`` tensors and returns zeros where ``mask`` is 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from toolgym.trainers.rl._checks import ndim, same_shape

if TYPE_CHECKING:
    from torch import Tensor

Correction = Literal["none", "truncated", "masked"]
"""How a token's ratio π_prox/π_behaviour becomes its loss weight (see the module docstring)."""


def _log_ratio(prox_logp: Tensor, behaviour_logp: Tensor, mask: Tensor) -> Tensor:
    """``prox - behaviour`` on the mask, 0 elsewhere (never NaN from padding), without gradient."""
    import torch

    ndim("prox_logp", prox_logp, 2, "(B, T)")
    same_shape("prox_logp", prox_logp, "behaviour_logp", behaviour_logp)
    same_shape("prox_logp", prox_logp, "mask", mask)
    keep = mask.bool()
    return torch.where(keep, prox_logp.detach() - behaviour_logp.detach(), torch.zeros_like(prox_logp))


def importance_weights(prox_logp: Tensor, behaviour_logp: Tensor, mask: Tensor, *, kind: Correction, cap: float) -> Tensor:
    """Per-token loss weights of the correction ``kind`` with cap ``C``.

    Args:
        prox_logp: ``(B, T)`` the learner's log-probs before the update.
        behaviour_logp: ``(B, T)`` the log-probs the inference engine sampled with.
        mask: ``(B, T)`` 1 on sampled tokens.
        kind: "none" (weight 1), "truncated" (``min(ρ, C)``) or "masked" (``1[1/C <= ρ <= C]``).
        cap: C, > 1.

    Returns:
        ``(B, T)`` weights without gradient; 0 where ``mask`` is 0.

    Example:
        >>> import torch
        >>> prox, behaviour = torch.log(torch.tensor([[0.9, 0.1, 0.5]])), torch.log(torch.tensor([[0.3, 0.4, 0.5]]))
        >>> importance_weights(prox, behaviour, torch.ones(1, 3), kind="truncated", cap=2.0)
        tensor([[2.0000, 0.2500, 1.0000]])
        >>> importance_weights(prox, behaviour, torch.ones(1, 3), kind="masked", cap=2.0)
        tensor([[0., 0., 1.]])
    """
    import torch

    if cap <= 1.0:
        raise ValueError(f"cap must be > 1 (ratios are kept within [1/cap, cap]), got {cap}")
    log_ratio = _log_ratio(prox_logp, behaviour_logp, mask)  # (B, T)
    keep = mask.to(prox_logp.dtype)
    if kind == "none":
        return keep
    log_cap = math.log(cap)
    if kind == "truncated":
        return torch.exp(log_ratio.clamp(max=log_cap)) * keep  # clamp first: no overflow for huge ratios
    if kind == "masked":
        inside = (log_ratio >= -log_cap) & (log_ratio <= log_cap)
        return inside.to(prox_logp.dtype) * keep
    raise ValueError(f"kind must be 'none', 'truncated' or 'masked', got {kind!r}")


def corrected_tokens(prox_logp: Tensor, behaviour_logp: Tensor, mask: Tensor, *, kind: Correction, cap: float) -> Tensor:
    """``(B, T)`` 1 on the tokens the correction changed: truncated (ρ > C) or masked (ρ outside [1/C, C])."""
    import torch

    log_ratio = _log_ratio(prox_logp, behaviour_logp, mask)
    keep = mask.bool()
    if kind == "none":
        return torch.zeros_like(prox_logp)
    hit = log_ratio > math.log(cap) if kind == "truncated" else log_ratio.abs() > math.log(cap)
    return (hit & keep).to(prox_logp.dtype)


def logprob_gap(prox_logp: Tensor, behaviour_logp: Tensor, mask: Tensor) -> Tensor:
    """``(B, T)`` ``|log π_prox - log π_behaviour|``: the train-inference log-prob gap per token."""
    return _log_ratio(prox_logp, behaviour_logp, mask).abs()


def behaviour_kl(prox_logp: Tensor, behaviour_logp: Tensor, mask: Tensor) -> Tensor:
    """``(B, T)`` k3 estimate of KL(π_behaviour ‖ π_prox) from tokens π_behaviour sampled: ``ρ - 1 - log ρ`` >= 0."""
    import torch

    log_ratio = _log_ratio(prox_logp, behaviour_logp, mask)
    return torch.expm1(log_ratio) - log_ratio
