"""``build_optimizer``: AdamW or MuonClip over a model, with the parameter plan of ``plan.py``."""

from __future__ import annotations

from typing import Any, Literal

from toolgym.trainers.optim.plan import param_plan
from toolgym.trainers.optim.qk_clip import Timing

OptimizerKind = Literal["adamw", "muonclip"]

DEFAULT_QK_TAU = 100.0
"""Kimi K2's QK-Clip threshold."""


def build_optimizer(
    model: Any, kind: OptimizerKind = "adamw", *, lr: float, weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, momentum: float = 0.95,
    qk_clip_tau: float | None = DEFAULT_QK_TAU, qk_clip_timing: Timing = "observed", decay_vectors: bool = False,
) -> Any:
    """An optimizer for ``model``.

    Args:
        model: A transformers causal LM (or any ``nn.Module``).
        kind: ``"adamw"``: ``torch.optim.AdamW`` on everything, weight decay on matrices only.
            ``"muonclip"``: :class:`~toolgym.trainers.optim.muonclip.MuonClip` (Muon with RMS matching on
            hidden matrices, per expert on expert stacks; AdamW on embeddings, head, routers, 1-D
            parameters; QK-Clip after each step).
        lr: Learning rate (shared by both halves of MuonClip).
        weight_decay: Decoupled weight decay of matrices; 1-D parameters (norms, biases) get none.
        betas: AdamW betas.
        eps: AdamW epsilon.
        momentum: Muon momentum (MuonClip only).
        qk_clip_tau: QK-Clip threshold for MuonClip; ``None`` turns QK-Clip off.
        qk_clip_timing: ``"observed"`` (K2: logits of the training forward) or ``"remeasure"`` (again on
            the updated weights, so the step's batches end at or under τ); see ``qk_clip.py``.
        decay_vectors: AdamW only: decay 1-D parameters too (SFT's setting; RL decays matrices only).

    Returns:
        A ``torch.optim.Optimizer``.

    Example:
        ``opt = build_optimizer(model, "muonclip", lr=2e-3, qk_clip_tau=50.0)``; after ``opt.step()``,
        ``opt.last_qk_report.metrics()`` has the max logit and the clipped-head count.
    """
    import torch

    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if kind == "adamw":
        plan = param_plan(model)
        params = dict(model.named_parameters())
        decay = [params[n] for n, role in plan.items() if role != "adamw_no_decay"]
        no_decay = [params[n] for n, role in plan.items() if role == "adamw_no_decay"]
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": weight_decay if decay_vectors else 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps)
    if kind == "muonclip":
        from toolgym.trainers.optim.muonclip import MuonClip
        from toolgym.trainers.optim.qk_clip import QKClip

        qk_clip = None if qk_clip_tau is None else QKClip(model, qk_clip_tau, timing=qk_clip_timing)
        return MuonClip(model, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, momentum=momentum, qk_clip=qk_clip)
    raise ValueError(f"optimizer kind must be 'adamw' or 'muonclip', got {kind!r}")
