"""PPO's value function (a head on the policy's last hidden state, or a separate critic model), and model copies.

Both predict, at every position ``t`` of a row, the return of the state after token ``t``;
trainers use positions ``0 .. T-2`` so values line up with the log-probs of tokens ``1 .. T-1``
(the value of the state in which each token is sampled).

* ``"head"``: one linear layer reading the policy's final hidden state. The policy trunk is
  shared, so the value loss also shapes the trunk (as in many RLHF PPO set-ups).
* ``"critic"``: a deep copy of the initial policy with its own head; only the value loss
  trains it.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import nn


class ValueHead(nn.Module):
    """``hidden (B, T, H) -> values (B, T)``, initialised to predict 0 everywhere."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)  # start from V = 0: GAE then begins as Monte-Carlo returns
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden.float()).squeeze(-1)  # (B, T)


class ValueModel(nn.Module):
    """The value function of one PPO run.

    Args:
        kind: ``"head"`` (reads the policy's hidden states) or ``"critic"`` (own copy of the model).
        policy: The policy model; copied when ``kind`` is ``"critic"``.
    """

    def __init__(self, kind: Literal["head", "critic"], policy: Any):
        super().__init__()
        self.kind = kind
        self.head = ValueHead(int(policy.config.hidden_size))
        self.critic = detached_copy(policy) if kind == "critic" else None

    def values(self, policy_outputs: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values (B, T-1) of the states in which tokens 1 .. T-1 were sampled."""
        return self._all(policy_outputs, input_ids, attention_mask)[:, :-1]

    def predict(self, policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values (B, T) of the state after every position, without gradients (GAE at collection time).

        Position ``t``'s value is that of the state after token ``t``: ``[:, :-1]`` lines up with
        the sampled tokens 1 .. T-1, and the last real position is the state after the row.
        """
        with torch.no_grad():
            outputs = None
            if self.critic is None:
                outputs = policy(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
            return self._all(outputs, input_ids, attention_mask)

    def _all(self, policy_outputs: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.critic is None:
            hidden = policy_outputs.hidden_states[-1]  # (B, T, H)
        else:
            out = self.critic(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
            hidden = out.hidden_states[-1]  # (B, T, H)
        return self.head(hidden)  # (B, T)


def frozen_copy(model: Any) -> Any:
    """A :func:`detached_copy` in eval mode with no trainable parameter: the KL term's reference policy."""
    ref = detached_copy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def detached_copy(model: Any) -> Any:
    """A deep copy of ``model`` without the copied forward hooks (QK-Clip observes the original only)."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
    return clone
