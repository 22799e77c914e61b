"""Generalized advantage estimation over the policy tokens of a multi-turn row.

A multi-turn row interleaves policy tokens (mask 1) with prompt and environment tokens
(mask 0). Only policy tokens are steps: GAE runs over them in order and skips the others, so
a tool result between two turns is not a step with its own value. The end of the row is
bootstrapped: from ``V`` of the state after the last token when the episode was truncated
(max turns, token budget, context limit), from 0 when it terminated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolgym.trainers.rl._checks import ndim, per_sequence, same_shape

if TYPE_CHECKING:
    from torch import Tensor


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, *, bootstrap: Tensor, terminated: Tensor,
    gamma: float = 1.0, lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns by GAE(γ, λ), per policy token.

    ``δ_t = r_t + γ V_next - V_t``, ``A_t = δ_t + γλ A_next``, where "next" is the next policy
    token of the row; after the last one, ``V_next`` is ``bootstrap`` (truncated) or 0
    (``terminated``).

    Args:
        rewards: ``(B, T)`` rewards, only on policy tokens (usually one, on the last token:
            see :func:`terminal_rewards`).
        values: ``(B, T)`` value predictions (read on policy tokens only).
        mask: ``(B, T)`` 1 on policy tokens.
        bootstrap: ``(B,)`` value of the state after the row, used when not terminated.
        terminated: ``(B,)`` bool, ``True`` when the episode ended by itself (no bootstrap).
        gamma: Discount per policy token.
        lam: GAE λ; 1 gives Monte-Carlo returns minus V, 0 gives one-step TD errors.

    Returns:
        ``(advantages, returns)``, each ``(B, T)`` float32, 0 off the mask; ``returns = A + V``.

    Example:
        >>> import torch
        >>> adv, ret = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 9.0, 0.5]]),
        ...                torch.tensor([[1, 0, 1]]), bootstrap=torch.tensor([0.0]),
        ...                terminated=torch.tensor([True]), gamma=1.0, lam=1.0)
        >>> adv
        tensor([[0.5000, 0.0000, 0.5000]])
    """
    import torch

    ndim("rewards", rewards, 2, "(B, T)")
    same_shape("rewards", rewards, "values", values)
    same_shape("rewards", rewards, "mask", mask)
    batch, steps = rewards.shape
    per_sequence("bootstrap", bootstrap, batch)
    per_sequence("terminated", terminated, batch)
    keep = mask.bool()  # (B, T)
    if bool((rewards.ne(0) & ~keep).any()):
        raise ValueError("rewards must sit on policy tokens (mask 1); found a nonzero reward where mask is 0")
    r, v = rewards.detach().float(), values.detach().float()  # (B, T)
    next_value = torch.where(terminated.bool(), 0.0, bootstrap.detach().float())  # (B,)
    next_adv = torch.zeros(batch, dtype=torch.float32, device=rewards.device)  # (B,)
    advantages = torch.zeros_like(r)  # (B, T)
    for t in range(steps - 1, -1, -1):  # backwards; environment tokens leave the carry untouched
        here = keep[:, t]  # (B,)
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(here, adv_t, 0.0)
        next_adv = torch.where(here, adv_t, next_adv)
        next_value = torch.where(here, v[:, t], next_value)
    returns = torch.where(keep, advantages + v, 0.0)
    return advantages, returns


def terminal_rewards(reward: Tensor, mask: Tensor) -> Tensor:
    """Place one reward per row on its last policy token: ``(B,)`` -> ``(B, T)``.

    Rows without a policy token get no reward (there is no action to credit).

    Example:
        >>> import torch
        >>> terminal_rewards(torch.tensor([2.0]), torch.tensor([[0, 1, 1, 0]]))
        tensor([[0., 0., 2., 0.]])
    """
    import torch

    ndim("mask", mask, 2, "(B, T)")
    per_sequence("reward", reward, mask.shape[0])
    keep = mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    last = torch.where(keep, positions, -1).amax(dim=1)  # (B,), -1 for empty rows
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    rows = torch.nonzero(last >= 0).squeeze(1)
    out[rows, last[rows]] = reward[rows].float()
    return out


def masked_whiten(values: Tensor, mask: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Normalize ``values`` to mean 0 and std 1 over masked positions (PPO advantage whitening).

    Example:
        >>> import torch
        >>> masked_whiten(torch.tensor([[1.0, 3.0, 100.0]]), torch.tensor([[1, 1, 0]]))
        tensor([[-1.,  1.,  0.]])
    """
    import torch

    same_shape("values", values, "mask", mask)
    keep = mask.bool()
    count = keep.sum().clamp(min=1)
    mean = torch.where(keep, values, 0.0).sum() / count
    var = torch.where(keep, (values - mean) ** 2, 0.0).sum() / count
    return torch.where(keep, (values - mean) / (var.sqrt() + eps), 0.0)
