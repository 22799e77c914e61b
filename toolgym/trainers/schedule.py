"""Learning-rate schedules, one function for RL (per iteration) and SFT (per step).

A linear warmup, then the peak held (``constant``) or decayed to ``final`` of it along a cosine
(``cosine``) or a line (``linear``). Pure Python, so configs can name a schedule without torch.
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "cosine", "linear"]
"""After warmup: hold the peak, or decay it to ``final`` of the peak along a cosine or a line."""


def lr_factor(step: int, warmup: int, progress: float, schedule: Schedule = "cosine", final: float = 0.1) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based).

    Args:
        step: Steps (SFT) or iterations (RL) done before this one.
        warmup: Linear warmup length: the factor is ``(step + 1) / warmup`` while ``step < warmup``.
        progress: How far the run is, 0 -> 1 (decay schedules read it; clamped to 1).
        schedule: ``"constant"``, ``"cosine"`` or ``"linear"``.
        final: The factor the decay schedules reach at progress 1.

    Example:
        >>> [lr_factor(s, 2, s / 4, "linear", final=0.0) for s in range(5)]
        [0.5, 1.0, 0.5, 0.25, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    done = min(1.0, progress)
    if schedule == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * done))
    if schedule == "linear":
        return final + (1 - final) * (1 - done)
    raise ValueError(f"schedule must be 'constant', 'cosine' or 'linear', got {schedule!r}")
