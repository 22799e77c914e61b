"""Group-relative advantages (GRPO and Dr. GRPO) and the zero-variance-group diagnostic.

GRPO samples K completions ("siblings") per prompt and uses each one's reward relative to its
group as the advantage: ``A = (r - mean) / (std + eps)``. Dr. GRPO drops the division by the
standard deviation, which otherwise up-weights prompts that are nearly always solved or nearly
always failed. A group whose rewards are all equal carries no learning signal; it is worth
counting (and often dropping), because a run of such groups looks like training but is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolgym.trainers.rl._checks import ndim

if TYPE_CHECKING:
    from torch import Tensor


def group_advantages(rewards: Tensor, *, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """Advantages of K siblings relative to their group.

    Args:
        rewards: ``(G, K)`` rewards, one row per group (prompt), one column per sibling.
        scale_by_std: ``True`` divides by the group's sample standard deviation (GRPO);
            ``False`` only subtracts the group mean (Dr. GRPO).
        eps: Added to the standard deviation, so a zero-variance group gives advantages 0.

    Returns:
        ``(G, K)`` advantages in float32; every row sums to 0.

    Example:
        >>> import torch
        >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), scale_by_std=False)
        tensor([[ 0.5000, -0.5000, -0.5000,  0.5000]])
    """
    ndim("rewards", rewards, 2, "(G, K): groups by siblings")
    if rewards.shape[1] < 2:
        raise ValueError(f"group advantages need at least 2 siblings per group, got K={rewards.shape[1]}")
    if not bool(rewards.isfinite().all()):
        raise ValueError("rewards must be finite; drop unscorable episodes (and groups left with < 2) before advantages")
    r = rewards.float()  # (G, K)
    centered = r - r.mean(dim=1, keepdim=True)  # (G, K)
    if not scale_by_std:
        return centered
    std = r.std(dim=1, keepdim=True)  # (G, 1), sample std (correction 1), as GRPO and TRL use
    return centered / (std + eps)


def zero_variance_groups(rewards: Tensor, atol: float = 1e-6) -> Tensor:
    """Which groups have (almost) identical rewards, and so no GRPO gradient.

    Args:
        rewards: ``(G, K)`` rewards.
        atol: Groups whose max minus min reward is at most this are zero-variance.

    Returns:
        ``(G,)`` bool, ``True`` for a zero-variance group.

    Example:
        >>> import torch
        >>> zero_variance_groups(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
        tensor([ True, False])
    """
    ndim("rewards", rewards, 2, "(G, K): groups by siblings")
    spread = rewards.amax(dim=1) - rewards.amin(dim=1)  # (G,)
    return spread <= atol
