"""MuonClip: Muon on hidden matrices (per expert for expert stacks), AdamW on the rest, QK-Clip after each step.

``torch.optim.Muon`` accepts 2-D parameters only. A routed-expert stack ``(E, out, in)`` is
handed to it as E 2-D views that share the stack's storage; before each step every view gets
the matching slice of the stack's gradient, so Newton-Schulz orthogonalizes each expert's
update on its own and Muon's in-place update writes straight into the stack. The views are
made once, so the stack must keep its storage: load weights with ``load_state_dict`` (it copies
in place), and build the optimizer after moving the model to its device and dtype.

Learning rates follow Moonshot's RMS matching (``adjust_lr_fn="match_rms_adamw"``): Muon's
update is scaled by ``0.2 · sqrt(max(out, in))`` so that one learning rate and weight decay
serve both halves, as in ``W ← W − η (0.2 · O · sqrt(max(A, B)) + λ W)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from toolgym.trainers.optim.plan import ROLES, param_plan

if TYPE_CHECKING:
    from toolgym.trainers.optim.qk_clip import QKClip, QKClipReport


class MuonClip(torch.optim.Optimizer):
    """One optimizer object (schedulers, ``zero_grad``, ``state_dict``) over a Muon and an AdamW.

    Args:
        model: The model; its parameters are split by :func:`~toolgym.trainers.optim.plan.param_plan`.
        lr: Learning rate of both halves (RMS matching makes Muon's comparable to AdamW's).
        weight_decay: Decoupled weight decay of Muon matrices and AdamW matrices (not of 1-D parameters).
        betas: AdamW betas.
        eps: AdamW epsilon.
        momentum: Muon momentum.
        nesterov: Muon Nesterov momentum.
        ns_steps: Newton-Schulz iterations.
        adjust_lr_fn: Muon's learning-rate adjustment; ``"match_rms_adamw"`` (Moonshot) by default.
        qk_clip: A :class:`~toolgym.trainers.optim.qk_clip.QKClip` to run after every step, or ``None``.

    After ``step()``, ``last_qk_report`` holds the QK-Clip report of that step.
    """

    def __init__(
        self, model: Any, *, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
        adjust_lr_fn: str | None = "match_rms_adamw", qk_clip: QKClip | None = None,
    ) -> None:
        plan = param_plan(model)
        params = dict(model.named_parameters())
        by_role = {role: [params[n] for n, r in plan.items() if r == role] for role in ROLES}
        self._stacks = by_role.get("muon_per_expert", [])
        self._expert_views = [[stack.detach()[e] for e in range(stack.shape[0])] for stack in self._stacks]
        muon_params = by_role.get("muon", []) + [v for views in self._expert_views for v in views]
        self._all_params = [p for role_params in by_role.values() for p in role_params]
        if not muon_params:
            raise ValueError(f"{type(model).__name__} has no hidden matrices for Muon; use kind='adamw'")
        self._muon = torch.optim.Muon(
            muon_params, lr=lr, weight_decay=weight_decay, momentum=momentum,
            nesterov=nesterov, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
        )
        adamw_groups = [
            {"params": by_role.get("adamw_decay", []), "weight_decay": weight_decay},
            {"params": by_role.get("adamw_no_decay", []), "weight_decay": 0.0},
        ]
        self._adamw = torch.optim.AdamW([g for g in adamw_groups if g["params"]], lr=lr, betas=betas, eps=eps)
        super().__init__(self._all_params, {"lr": lr})
        # One list of the children's own group dicts: a scheduler that edits "lr" edits them.
        self.param_groups = self._muon.param_groups + self._adamw.param_groups
        self._muon.param_groups[0]["role"] = "muon"  # plain matrices and expert slices alike
        for group in self._adamw.param_groups:
            group["role"] = "adamw_decay" if group["weight_decay"] else "adamw_no_decay"
        self.qk_clip = qk_clip
        self.last_qk_report: QKClipReport | None = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Muon and AdamW updates, then QK-Clip (when configured) from the logits seen since the last step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for stack, views in zip(self._stacks, self._expert_views, strict=True):
            for e, view in enumerate(views):
                view.grad = None if stack.grad is None else stack.grad[e]
        self._muon.step()
        self._adamw.step()
        for views in self._expert_views:
            for view in views:
                view.grad = None
        if self.qk_clip is not None:
            self.last_qk_report = self.qk_clip.clip()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the model's parameters (expert stacks included)."""
        for p in self._all_params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        """Both halves' states (momentum buffers per expert slice, Adam moments)."""
        return {"muon": self._muon.state_dict(), "adamw": self._adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, for an optimizer built over the same model."""
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError(f"not a MuonClip state dict: keys {sorted(state_dict)}, expected 'adamw' and 'muon'")
        self._muon.load_state_dict(state_dict["muon"])
        self._adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self._muon.param_groups + self._adamw.param_groups
