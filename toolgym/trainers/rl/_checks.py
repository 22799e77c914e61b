"""Shape checks shared by the RL math: a wrong shape is a caller's bug, named with both shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")


def ndim(name: str, x: Tensor, expected: int, meaning: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``expected`` dimensions (``meaning`` names them, e.g. "(B, T)")."""
    if x.ndim != expected:
        raise ValueError(f"{name} must be {meaning}, got shape {tuple(x.shape)}")


def per_sequence(name: str, x: Tensor, batch: int) -> None:
    """Raise ``ValueError`` unless ``x`` holds one value per sequence: shape ``(batch,)``."""
    if x.shape != (batch,):
        raise ValueError(f"{name} must hold one value per sequence, shape ({batch},), got {tuple(x.shape)}")
