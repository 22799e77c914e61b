"""Routed experts of an MoE forward: record them, or force recorded ones (routing replay, R3).

transformers' MoE blocks call their router as ``gate(hidden)`` and read back
``(router_logits, weights, indices)``: ``indices`` ``(N, k)`` are the experts each of the ``N``
tokens goes to, ``weights`` ``(N, k)`` how their outputs are mixed. :class:`RoutingHooks` hooks
those gate modules for the duration of a ``with`` block (the model code is not forked; the
hooks are removed on exit) and, per MoE layer:

* **records** the indices the router chose (``natural``) and the indices the experts received
  (``used``);
* **replays**, when given forced indices: rows with a forced choice send the token to the
  forced experts, while the mixing weights are recomputed from *this* forward's router scores
  at those experts, so the router still gets a gradient (R3). Rows without one (``-1``) keep
  the router's own choice and weights unchanged.

The routers it knows, and how each turns its logits into the weights of chosen experts:

- ``Qwen3MoeTopKRouter`` (Qwen3-MoE): softmax over all experts, gathered at the chosen ones,
  renormalized over them when ``norm_topk_prob``;
- ``DeepseekV3TopkRouter`` (DeepSeek-V3, Kimi K2): sigmoid scores gathered at the chosen ones
  (the ``e_score_correction_bias`` and the group limit only steer *selection*), renormalized
  when ``norm_topk_prob``, times ``routed_scaling_factor``.

Any other gate class (or a dense model, which has none) cannot be replayed:
:func:`moe_gates` raises before any forward runs.

Example::

    with RoutingHooks(model) as hooks:           # record
        model(input_ids=ids)
    chosen = hooks.natural                        # one (B*T, k) tensor per MoE layer
    with RoutingHooks(model, forced=chosen):      # replay them in another forward
        out = model(input_ids=ids)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

RouterKind = Literal["softmax", "sigmoid"]

REPLAYABLE_ROUTERS: dict[str, RouterKind] = {
    "Qwen3MoeTopKRouter": "softmax",
    "DeepseekV3TopkRouter": "sigmoid",
}
"""Gate classes whose routing can be recorded and replayed, by class name."""


class RoutingError(ValueError):
    """The model's routers cannot be recorded or replayed, or a forced routing does not fit them."""


def moe_gates(model: Any, *, field: str = "routing replay") -> list[tuple[int, Any, RouterKind]]:
    """``(transformer layer, gate module, scoring)`` of each MoE layer of ``model``, in layer order.

    Args:
        model: A transformers causal LM.
        field: The setting that asked for routing (named in the error, with the fix).

    Raises:
        RoutingError: No gate module (a dense model) or a gate of a class not in
            ``REPLAYABLE_ROUTERS``.
    """
    gates = [(name, module) for name, module in model.named_modules() if name.endswith("mlp.gate")]
    known = ", ".join(sorted(REPLAYABLE_ROUTERS))
    if not gates:
        raise RoutingError(f"{field}: {type(model).__name__} has no MoE router (*.mlp.gate), so there is no routing "
                           f"to record or replay; turn {field} off for a dense model, or use a Qwen3-MoE or "
                           "DeepSeek-V3/Kimi model")
    out: list[tuple[int, Any, RouterKind]] = []
    for name, module in gates:
        kind = REPLAYABLE_ROUTERS.get(type(module).__name__)
        if kind is None:
            raise RoutingError(f"{field}: router {name} is a {type(module).__name__}, which toolgym cannot replay "
                               f"(known: {known}); turn {field} off for this model")
        out.append((int(name.split(".layers.")[1].split(".")[0]), module, kind))
    return out


def gate_weights(module: Any, kind: RouterKind, logits: Tensor, indices: Tensor) -> Tensor:
    """``(N, k)`` mixing weights the gate gives experts ``indices`` ``(N, k)`` from its ``logits`` ``(N, E)``.

    The same arithmetic as the gate's own forward, so a token routed to the experts its router
    chose gets bit-identical weights; the result is differentiable in ``logits``.
    """
    import torch

    if kind == "softmax":
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)  # (N, E)
        top = probs.gather(1, indices)  # (N, k)
        if module.norm_topk_prob:
            top = top / top.sum(dim=-1, keepdim=True)
        return top.to(logits.dtype)
    scores = logits.sigmoid()  # (N, E), the gate computes logits in float32
    top = scores.gather(1, indices)  # (N, k)
    if module.norm_topk_prob:
        top = top / (top.sum(dim=-1, keepdim=True) + 1e-20)
    return top * module.routed_scaling_factor


class RoutingHooks:
    """Record (and optionally force) every MoE layer's routing for the duration of a ``with`` block.

    Args:
        model: A model with replayable gates (:func:`moe_gates`).
        forced: Per MoE layer, ``(N, k)`` long expert ids for the ``N`` tokens the gate will
            see (the forward's ``B*T``, row-major); a row of ``-1`` keeps the router's choice.
            ``None`` only records.
        field: Named in errors (the setting that asked for routing).

    Attributes:
        natural: Per MoE layer, the ``(N, k)`` experts the router chose in the last call.
        used: Per MoE layer, the ``(N, k)`` experts the tokens were sent to in the last call.
    """

    def __init__(self, model: Any, forced: Sequence[Tensor] | None = None, *, field: str = "routing replay"):
        self.gates = moe_gates(model, field=field)
        self.layers = [index for index, _, _ in self.gates]
        """Transformer-layer index of each MoE layer."""
        self.field = field
        if forced is not None and len(forced) != len(self.gates):
            raise RoutingError(f"{field}: the recorded routing has {len(forced)} MoE layers, the model has "
                               f"{len(self.gates)}; replay rows generated by this model's architecture")
        self.forced = list(forced) if forced is not None else None
        self.natural: list[Tensor | None] = [None] * len(self.gates)
        self.used: list[Tensor | None] = [None] * len(self.gates)
        self._handles: list[Any] = []

    def __enter__(self) -> RoutingHooks:
        for layer, (_, module, kind) in enumerate(self.gates):
            self._handles.append(module.register_forward_hook(self._hook(layer, kind)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: int, kind: RouterKind) -> Any:
        import torch

        def hook(module: Any, args: Any, output: Any) -> Any:
            logits, weights, natural = output  # (N, E), (N, k), (N, k)
            self.natural[layer] = natural.detach()
            if self.forced is None:
                self.used[layer] = natural.detach()
                return None  # output unchanged
            forced = self._check(layer, natural, module)
            take = (forced[:, :1] >= 0)  # (N, 1) rows with a recorded choice
            indices = torch.where(take, forced, natural)  # (N, k)
            mixed = torch.where(take, gate_weights(module, kind, logits, indices), weights)  # (N, k)
            self.used[layer] = indices.detach()
            return logits, mixed, indices

        return hook

    def _check(self, layer: int, natural: Tensor, module: Any) -> Tensor:
        forced = (self.forced or [])[layer].to(natural.device)
        if forced.shape != natural.shape:
            raise RoutingError(f"{self.field}: MoE layer {layer} routes {tuple(natural.shape)} (tokens, top_k) but the "
                               f"recorded routing is {tuple(forced.shape)}; record with the same model and top_k")
        experts = int(module.weight.shape[0])
        if bool(((forced < -1) | (forced >= experts)).any()):
            raise RoutingError(f"{self.field}: MoE layer {layer} has experts 0..{experts - 1}, the recorded routing "
                               f"names {forced.min().item()}..{forced.max().item()}")
        return forced


def last_position_routing(hooks: RoutingHooks, batch: int) -> Tensor:
    """``(B, L, k)`` experts of each row's last position in the hooked forward of ``batch`` left-padded rows.

    A gate sees ``B*T`` tokens row-major, so row ``b``'s last position is ``b*T + T - 1``; this
    is the position whose logits sample the next token.
    """
    import torch

    layers = []
    for layer, chosen in enumerate(hooks.natural):
        if chosen is None:
            raise RoutingError(f"MoE layer {layer} was not called in the last forward")
        layers.append(chosen.reshape(batch, -1, chosen.shape[-1])[:, -1])  # (B, k)
    return torch.stack(layers, dim=1)  # (B, L, k)
