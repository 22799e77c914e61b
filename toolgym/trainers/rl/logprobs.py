"""Per-token log-probabilities and entropies from logits, in float32 and in row chunks.

A full ``(B, T, V)`` float32 log-softmax of a bf16 model doubles or quadruples the logits'
memory; computing it a chunk of rows at a time keeps the peak near one chunk. The results
keep their autograd graph, so the same function serves the training forward and the
behaviour/reference log-probs (under ``torch.no_grad``).

Alignment is the caller's: for a causal LM, ``logits[:, :-1]`` predict ``input_ids[:, 1:]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolgym.trainers.rl._checks import ndim

if TYPE_CHECKING:
    from torch import Tensor

CHUNK_ROWS = 4096
"""Token positions per float32 log-softmax chunk."""


def token_logprobs(logits: Tensor, targets: Tensor, *, temperature: float = 1.0, chunk_rows: int = CHUNK_ROWS) -> Tensor:
    """``log softmax(logits / temperature)[target]`` at every position.

    Args:
        logits: ``(B, T, V)`` logits, any float dtype.
        targets: ``(B, T)`` token ids the logits should predict.
        temperature: Sampling temperature the behaviour log-probs were taken at; logits are divided by it.
        chunk_rows: Positions per float32 chunk (memory bound, not a result change).

    Returns:
        ``(B, T)`` float32 log-probabilities.

    Example:
        >>> import torch
        >>> token_logprobs(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))
        tensor([[-1.3863, -1.3863]])
    """
    import torch

    ndim("logits", logits, 3, "(B, T, V)")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must be (B, T) = {tuple(logits.shape[:2])} to match the logits, got {tuple(targets.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch, steps, vocab = logits.shape
    flat = logits.reshape(-1, vocab)  # (B*T, V)
    flat_targets = targets.reshape(-1, 1).long()  # (B*T, 1)
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        chunk = flat[start : start + chunk_rows].float() / temperature  # (C, V)
        picked = chunk.gather(1, flat_targets[start : start + chunk_rows]).squeeze(1)  # (C,)
        pieces.append(picked - torch.logsumexp(chunk, dim=1))
    if not pieces:
        return flat.new_zeros((batch, steps), dtype=torch.float32)
    return torch.cat(pieces).view(batch, steps)


def token_entropy(logits: Tensor, *, temperature: float = 1.0, chunk_rows: int = CHUNK_ROWS) -> Tensor:
    """Entropy (nats) of the next-token distribution at every position.

    Args:
        logits: ``(B, T, V)`` logits.
        temperature: Divides the logits first, as in sampling.
        chunk_rows: Positions per float32 chunk.

    Returns:
        ``(B, T)`` float32 entropies, in ``[0, log V]``.

    Example:
        >>> import torch
        >>> round(float(token_entropy(torch.zeros(1, 1, 4))[0, 0]), 4)  # uniform over 4: log 4
        1.3863
    """
    import torch

    ndim("logits", logits, 3, "(B, T, V)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch, steps, vocab = logits.shape
    flat = logits.reshape(-1, vocab)  # (B*T, V)
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        logp = torch.log_softmax(flat[start : start + chunk_rows].float() / temperature, dim=1)  # (C, V)
        pieces.append(-(logp.exp() * logp).sum(dim=1))
    if not pieces:
        return flat.new_zeros((batch, steps), dtype=torch.float32)
    return torch.cat(pieces).view(batch, steps)
