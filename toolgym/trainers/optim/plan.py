"""Which optimizer updates which parameter: the plan both optimizers in this package follow.

Roles:

- ``"muon"``: 2-D hidden matrices (attention and dense/shared-expert MLP projections);
- ``"muon_per_expert"``: 3-D routed-expert stacks ``(E, out, in)``, orthogonalized one expert
  slice at a time, because each expert is its own matrix;
- ``"adamw_decay"``: token embeddings, the output head and the router gates (2-D, but not
  hidden matrices: an embedding row is a lookup, not a linear map, and a router is a tiny
  ``(E, hidden)`` classifier whose per-row scale sets the routing logits; orthogonalizing its
  update would force equal-sized changes on every expert, and DeepSeek-V3 keeps it in fp32);
- ``"adamw_no_decay"``: 1-D parameters (norm weights, biases).

Every parameter gets exactly one role (tied weights are one parameter).
"""

from __future__ import annotations

from typing import Any, Literal

Role = Literal["muon", "muon_per_expert", "adamw_decay", "adamw_no_decay"]
ROLES: tuple[Role, ...] = ("muon", "muon_per_expert", "adamw_decay", "adamw_no_decay")


def _adamw_matrices(model: Any) -> set[int]:
    """Ids of 2-D parameters that stay on AdamW: embeddings, the output head, router gates."""
    import torch

    keep: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) or name.endswith("mlp.gate"):
            keep.update(id(p) for p in module.parameters(recurse=False))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        keep.update(id(p) for p in head.parameters(recurse=False))
    return keep


def param_plan(model: Any) -> dict[str, Role]:
    """The role of every trainable parameter of ``model``, by name.

    Example:
        ``param_plan(model)["model.layers.1.mlp.experts.gate_up_proj"]`` is ``"muon_per_expert"``.
    """
    adamw_matrices = _adamw_matrices(model)
    plan: dict[str, Role] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2:
            plan[name] = "adamw_no_decay"
        elif id(param) in adamw_matrices:
            plan[name] = "adamw_decay"
        elif param.ndim == 2:
            plan[name] = "muon"
        elif param.ndim == 3:
            plan[name] = "muon_per_expert"
        else:
            raise ValueError(f"parameter {name} has {param.ndim} dimensions {tuple(param.shape)}; the optimizer plan "
                             "knows 1-D (AdamW), 2-D (Muon) and 3-D expert stacks (Muon per expert)")
    return plan
