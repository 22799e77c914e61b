"""Optimizers beside the models: AdamW, MuonClip (Muon + AdamW + QK-Clip) and QK-Clip itself.

Importing this package loads no torch; ``MuonClip`` loads it on first access.
"""

from typing import Any

from toolgym.trainers.optim.build import DEFAULT_QK_TAU, OptimizerKind, build_optimizer
from toolgym.trainers.optim.plan import ROLES, Role, param_plan
from toolgym.trainers.optim.qk_clip import (
    QK_CLIPPED_HEADS,
    QK_LAYER_MAX_LOGIT,
    QK_MAX_LOGIT,
    QKClip,
    QKClipReport,
    head_max_logits,
)

__all__ = [
    "DEFAULT_QK_TAU",
    "QK_CLIPPED_HEADS",
    "QK_LAYER_MAX_LOGIT",
    "QK_MAX_LOGIT",
    "ROLES",
    "MuonClip",
    "OptimizerKind",
    "QKClip",
    "QKClipReport",
    "Role",
    "build_optimizer",
    "head_max_logits",
    "param_plan",
]


def __getattr__(name: str) -> Any:
    if name == "MuonClip":  # subclasses torch.optim.Optimizer, so it imports torch
        from toolgym.trainers.optim.muonclip import MuonClip

        return MuonClip
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
