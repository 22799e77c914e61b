"""``Batch``: the typed training tensors an update reads, and how a micro-batch shares a minibatch.

A batch is what crosses from the generation half of an iteration (rollouts, scores,
advantages) to the update half; it holds tensors only, so it can be sent between processes.
Every per-token tensor is right-padded and aligned with ``input_ids``: position ``t`` of
``loss_mask``, ``old_logp``, per-token ``advantages``, ``returns`` and ``old_values`` describes
token ``t``, which the logits at ``t - 1`` predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from toolgym.rollouts.rows import TokenRow, collate
from toolgym.trainers.moe import routed_sequences


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
    prox_logp: torch.Tensor | None = None  # (B, T) the learner's log-probs before the update (importance corrections)
    routed_experts: torch.Tensor | None = None  # (B, T, L, k) long: experts that sampled token t, -1 if none (routing replay)

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
            out[f.name] = value[:, :width] if value.dim() >= 2 else value
        return Batch(**out)

    @property
    def tokens(self) -> float:
        """Loss-masked tokens that predict something (the first position predicts nothing)."""
        return float(self.loss_mask[:, 1:].sum())


def make_batch(rows: Sequence[TokenRow], pad_id: int, *, advantages: Sequence[float], rewards: Sequence[float],
               baselines: Sequence[float] | None = None) -> Batch:
    """A ``Batch`` from ``TokenRow``s and one advantage, reward and baseline per row."""
    t = collate(rows, pad_id)
    zeros = [0.0] * len(rows)
    return Batch(
        input_ids=t["input_ids"], attention_mask=t["attention_mask"], loss_mask=t["loss_mask"],
        old_logp=t["behaviour_logprobs"], advantages=torch.tensor(list(advantages), dtype=torch.float32),
        rewards=torch.tensor(list(rewards), dtype=torch.float32),
        baselines=torch.tensor(list(baselines or zeros), dtype=torch.float32), routed_experts=t.get("routed_experts"),
    )


def ptx_batches(rows: Sequence[Any], pad_id: int, size: int) -> list[Batch]:
    """Supervised rows (``ids``/``mask``, e.g. ``SFTRow``) as batches of ``size``; only ``loss_mask`` is read."""
    token_rows = [TokenRow(episode_id=f"ptx/{k}", input_ids=list(r.ids), loss_mask=list(r.mask),
                           behaviour_logprobs=[0.0] * len(r.ids), prompt_len=0, turn_spans=[], turn_indices=[],
                           ends_episode=True, terminated=True, truncated=False) for k, r in enumerate(rows)]
    return [make_batch(token_rows[i : i + size], pad_id, advantages=[0.0] * len(token_rows[i : i + size]),
                       rewards=[0.0] * len(token_rows[i : i + size])) for i in range(0, len(token_rows), size)]


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
    sequences = float((minibatch.loss_mask[:, 1:].sum(dim=1) > 0).sum())
    routed = float(routed_sequences(minibatch.attention_mask))
    return Share(tokens=max(minibatch.tokens, 1.0), sequences=max(sequences, 1.0), rows=len(micro) / len(minibatch),
                 routed=max(routed, 1.0))


def micro_batches(minibatch: Batch, size: int) -> list[tuple[Batch, Share]]:
    """``minibatch`` cut into micro-batches of ``size`` rows, each with its share of the whole."""
    index = torch.arange(len(minibatch))
    out = []
    for i in range(0, len(minibatch), size):
        micro = minibatch.select(index[i : i + size])
        out.append((micro, minibatch_share(minibatch, micro)))
    return out
