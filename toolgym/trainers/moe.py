"""Mixture-of-Experts in the loss: the router load-balancing loss and per-layer expert-load metrics.

Both tiny model kinds return their router logits when the training forward is called with
``output_router_logits=True`` (transformers records the gate modules' first output): one
``(B*T, E)`` tensor per MoE layer, in layer order, dense layers skipped. The experts a token
went to are not returned, so :func:`select_experts` recomputes them exactly as each router does:

- Qwen3-MoE: softmax over the logits, top-k;
- DeepSeek-V3 / Kimi K2: sigmoid scores plus the gate's ``e_score_correction_bias``, best
  ``topk_group`` groups, then top-k within them.

The balancing loss is DeepSeek-V3's complementary sequence-wise form. For each sequence s and
MoE layer, ``L_s = E · Σ_i f_{s,i} P_{s,i}`` over the sequence's own tokens (``f_{s,i}``: fraction
of its top-k assignments that went to expert i, no gradient; ``P_{s,i}``: its mean routing
probability of expert i, softmax for Qwen3, sigmoid scores normalized per token for DeepSeek-V3,
with gradient), averaged over layers. The loss of a batch is the mean of ``L_s`` over its
sequences. A product of two batch means (the Switch form pooled over all tokens) would make the
loss of a minibatch differ from the sum of its micro-batches' losses; a mean of per-sequence
terms does not, so gradient accumulation stays exact for any split. ``L_s`` is 1 when the
sequence's routing is perfectly balanced and approaches E when one expert takes everything.
Padding and any position with mask 0 is left out of both ``f`` and ``P``; a sequence with no
counted token is left out of the mean.

Example (``weight`` is the trainer's configurable coefficient)::

    out = model(input_ids=ids, attention_mask=am, output_router_logits=True)
    spec = router_spec(model)
    loss = policy_loss + weight * load_balancing_loss(out.router_logits, spec, mask=am)
    metrics = expert_load_metrics(out.router_logits, spec, mask=am)

In a training step, :func:`training_forward` asks for the router logits and
:func:`router_terms` turns them into one micro-batch's share of the loss and its load metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_AUX_WEIGHT = 0.001
"""Default weight of the balancing loss (Qwen3-MoE's ``router_aux_loss_coef``)."""

AUX_LOSS = "moe/aux_loss"
"""Sequence-wise balancing loss, mean over sequences and MoE layers: 1 when balanced, up to E when collapsed."""
CV_MAX = "moe/cv_max"
"""Largest per-layer coefficient of variation of tokens per expert (counted over the whole forward)."""
DEAD_TOTAL = "moe/dead_total"
"""Experts that received no token in this batch, summed over layers."""
LAYER_CV = "moe/layer{layer}/cv"
"""Coefficient of variation (population std / mean) of tokens per expert in one layer; 0 when balanced."""
LAYER_MAX_MIN = "moe/layer{layer}/max_min"
"""Tokens of the busiest expert / tokens of the idlest (min counted as 1 so a dead expert stays finite)."""
LAYER_DEAD = "moe/layer{layer}/dead"
"""Experts of one layer that received no token in this batch."""
LAYER_ENTROPY = "moe/layer{layer}/entropy"
"""Mean entropy (nats) of the per-token routing distribution; log E is uniform, 0 is one-hot."""

Score = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class RouterSpec:
    """How a model's routers pick experts, read from the model once.

    Attributes:
        score: ``"softmax"`` (Qwen3-MoE) or ``"sigmoid"`` (DeepSeek-V3 / Kimi K2).
        top_k: Experts per token.
        num_experts: Routed experts per layer.
        layers: Transformer-layer index of each MoE layer, in the order of ``router_logits``.
        biases: Per-layer score-correction bias (sigmoid routers) or ``None``.
        n_group: Expert groups (sigmoid routers; 1 means no group limit).
        topk_group: Groups a token may use.
    """

    score: Score
    top_k: int
    num_experts: int
    layers: tuple[int, ...]
    biases: tuple[Any, ...] = ()
    n_group: int = 1
    topk_group: int = 1


def router_spec(model: Any) -> RouterSpec:
    """Read the routing rule of a Qwen3-MoE or DeepSeek-V3 model (the gate modules' ``*.mlp.gate``)."""
    config = model.config
    gates = [(name, module) for name, module in model.named_modules() if name.endswith("mlp.gate")]
    if not gates:
        raise ValueError(f"{type(model).__name__} has no MoE gate modules (*.mlp.gate); is it a dense model?")
    layers = tuple(int(name.split(".layers.")[1].split(".")[0]) for name, _ in gates)
    if config.model_type == "qwen3_moe":
        return RouterSpec("softmax", config.num_experts_per_tok, config.num_experts, layers)
    if config.model_type == "deepseek_v3":
        biases = tuple(module.e_score_correction_bias for _, module in gates)
        return RouterSpec("sigmoid", config.num_experts_per_tok, config.n_routed_experts, layers, biases,
                          config.n_group, config.topk_group)
    raise ValueError(f"router_spec knows model types 'qwen3_moe' and 'deepseek_v3', got {config.model_type!r}")


def routing_probs(logits: Tensor, score: Score) -> Tensor:
    """Per-token routing distribution ``(N, E)`` from router logits ``(N, E)``, in float32."""
    import torch

    x = logits.float()
    if score == "softmax":
        return torch.softmax(x, dim=-1)
    s = torch.sigmoid(x)
    return s / s.sum(dim=-1, keepdim=True).clamp(min=1e-20)


def select_experts(logits: Tensor, spec: RouterSpec, layer: int = 0) -> Tensor:
    """The ``(N, top_k)`` experts the router of MoE layer ``layer`` picks from ``(N, E)`` logits."""
    import torch

    with torch.no_grad():
        x = logits.float()  # (N, E)
        if spec.score == "softmax":
            return torch.topk(torch.softmax(x, dim=-1), spec.top_k, dim=-1).indices
        choice = torch.sigmoid(x)
        if spec.biases:
            choice = choice + spec.biases[layer].to(choice)
        if spec.n_group > 1:  # DeepSeek-V3 group limit: keep the topk_group groups with the best top-2 sums
            grouped = choice.view(x.shape[0], spec.n_group, -1)  # (N, G, E/G)
            best = torch.topk(grouped.topk(2, dim=-1).values.sum(-1), spec.topk_group, dim=-1).indices  # (N, g)
            keep = torch.zeros(grouped.shape[:2], dtype=torch.bool, device=x.device).scatter_(1, best, True)
            choice = choice.masked_fill(~keep[..., None].expand_as(grouped).reshape_as(choice), float("-inf"))
        return torch.topk(choice, spec.top_k, dim=-1).indices


def _token_mask(mask: Tensor | None, rows: int, device: Any) -> Tensor:
    """The ``(B, T)`` float mask laid over the router's ``B*T`` tokens; ``None`` is one all-ones sequence."""
    import torch

    if mask is None:
        return torch.ones(1, rows, dtype=torch.float32, device=device)
    grid = mask.float().to(device)
    grid = grid if grid.dim() == 2 else grid.reshape(1, -1)
    if grid.numel() != rows:
        raise ValueError(f"mask has {grid.numel()} positions but the router saw {rows} tokens; pass the (B, T) "
                         "attention mask of the same forward")
    return grid


def _layer_counts(logits: Tensor, spec: RouterSpec, layer: int, weight: Tensor) -> Tensor:
    """Top-k assignments per expert ``(E,)``, weighted by the token mask."""
    import torch

    chosen = select_experts(logits, spec, layer)  # (N, k)
    counts = torch.zeros(spec.num_experts, dtype=torch.float32, device=logits.device)
    return counts.index_add_(0, chosen.reshape(-1), weight.repeat_interleave(spec.top_k))


def _check_layers(router_logits: Sequence[Tensor] | None, spec: RouterSpec) -> Sequence[Tensor]:
    if not router_logits:
        raise ValueError("no router logits: call the model with output_router_logits=True in the training forward")
    if len(router_logits) != len(spec.layers):
        raise ValueError(f"got router logits of {len(router_logits)} layers, the model has {len(spec.layers)} MoE layers")
    return router_logits


def sequence_balance_losses(router_logits: Sequence[Tensor], spec: RouterSpec, *,
                             mask: Tensor | None = None) -> Tensor:
    """Per-sequence balancing loss ``L_s``, mean over MoE layers of ``E · Σ_i f_{s,i} P_{s,i}``.

    ``f`` counts the experts the router picked (:func:`select_experts`, no gradient); ``P`` is
    the mean of :func:`routing_probs` and carries the gradient to the router.

    Args:
        router_logits: One ``(B*T, E)`` tensor per MoE layer (``outputs.router_logits``).
        spec: The model's :class:`RouterSpec`.
        mask: ``(B, T)`` 1 on tokens that count (the attention mask); ``None`` makes all
            ``B*T`` tokens one sequence.

    Returns:
        ``(B,)`` float32: each sequence's loss (above 0, 1 when balanced, at most E); exactly 0
        for a sequence with no counted token.
    """
    import torch

    logits_per_layer = _check_layers(router_logits, spec)
    grid = _token_mask(mask, logits_per_layer[0].shape[0], logits_per_layer[0].device)  # (B, T)
    rows, width = grid.shape
    tokens = grid.sum(dim=1).clamp(min=1)[:, None]  # (B, 1)
    total = torch.zeros(rows, dtype=torch.float32, device=grid.device)  # (B,)
    for layer, logits in enumerate(logits_per_layer):
        if logits.shape[0] != grid.numel():
            raise ValueError(f"MoE layer {layer} has {logits.shape[0]} router rows, layer 0 has {grid.numel()}")
        chosen = select_experts(logits, spec, layer)  # (B*T, k)
        picks = torch.zeros(logits.shape, dtype=torch.float32, device=grid.device).scatter_(1, chosen, 1.0)  # (B*T, E)
        picks = picks.view(rows, width, -1) * grid[..., None]  # (B, T, E)
        frac = picks.sum(dim=1) / (tokens * spec.top_k)  # (B, E): each counted row sums to 1
        probs = routing_probs(logits, spec.score).view(rows, width, -1) * grid[..., None]  # (B, T, E)
        total = total + spec.num_experts * (frac * probs.sum(dim=1) / tokens).sum(dim=-1)  # (B,)
    return total / len(logits_per_layer)


def routed_sequences(mask: Tensor | None) -> int:
    """Sequences with at least one counted token in a ``(B, T)`` mask (``None``: one)."""
    if mask is None:
        return 1
    grid = mask if mask.dim() == 2 else mask.reshape(1, -1)
    return int((grid.sum(dim=1) > 0).sum())


def load_balancing_loss(router_logits: Sequence[Tensor], spec: RouterSpec, *, mask: Tensor | None = None) -> Tensor:
    """Mean of :func:`sequence_balance_losses` over the sequences with a counted token.

    Args:
        router_logits: One ``(B*T, E)`` tensor per MoE layer (``outputs.router_logits``).
        spec: The model's :class:`RouterSpec`.
        mask: ``(B, T)`` 1 on tokens that count (the attention mask); ``None`` makes all
            tokens one sequence (then, for one layer, it is transformers' Switch loss ÷ top_k).

    Returns:
        Scalar float32 loss, differentiable through ``P``: 1 when balanced, at most E.
    """
    per_sequence = sequence_balance_losses(router_logits, spec, mask=mask)  # (B,)
    return per_sequence.sum() / max(1, routed_sequences(mask))


def expert_load_metrics(router_logits: Sequence[Tensor], spec: RouterSpec, *, mask: Tensor | None = None,
                        include_aux: bool = True) -> dict[str, float]:
    """Per-layer expert load of one forward, keyed by the ``moe/...`` names above.

    The load figures count every token of the forward together; ``moe/aux_loss`` is
    :func:`load_balancing_loss`, the per-sequence mean (left out with ``include_aux=False``, for a
    caller that has already computed the loss of this forward).

    Example:
        ``expert_load_metrics(out.router_logits, spec, mask=am)["moe/layer1/dead"]`` is the number
        of layer-1 experts that no token reached.
    """
    import torch

    logits_per_layer = _check_layers(router_logits, spec)
    out: dict[str, float] = {}
    with torch.no_grad():
        for layer, (logits, index) in enumerate(zip(logits_per_layer, spec.layers, strict=True)):
            weight = _token_mask(mask, logits.shape[0], logits.device).reshape(-1)  # (B*T,)
            counts = _layer_counts(logits, spec, layer, weight)  # (E,)
            mean = counts.mean().clamp(min=1e-12)
            probs = routing_probs(logits, spec.score)  # (N, E)
            entropy = -(probs * probs.clamp(min=1e-20).log()).sum(-1)  # (N,)
            out[LAYER_CV.format(layer=index)] = float(counts.std(correction=0) / mean)
            out[LAYER_MAX_MIN.format(layer=index)] = float(counts.max() / counts.min().clamp(min=1))
            out[LAYER_DEAD.format(layer=index)] = float((counts == 0).sum())
            out[LAYER_ENTROPY.format(layer=index)] = float((entropy * weight).sum() / weight.sum().clamp(min=1))
        if include_aux:
            out[AUX_LOSS] = float(load_balancing_loss(logits_per_layer, spec, mask=mask))
    out[CV_MAX] = max(out[LAYER_CV.format(layer=i)] for i in spec.layers)
    out[DEAD_TOTAL] = sum(out[LAYER_DEAD.format(layer=i)] for i in spec.layers)
    return out

def training_forward(model: Any, input_ids: Tensor, attention_mask: Tensor, *, hidden: bool = False) -> Any:
    """The training forward: router logits on (for the balance loss), hidden states when asked (a value head)."""
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if hasattr(model.config, "output_router_logits"):
        kwargs["output_router_logits"] = True
    if hidden:
        kwargs["output_hidden_states"] = True
    return model(**kwargs)


def router_terms(model: Any, outputs: Any, attention_mask: Tensor, *, weight: float, routed: float,
                 rows: float) -> tuple[Tensor | None, dict[str, float]]:
    """One micro-batch's share of the balance loss, and its expert-load metrics (``None, {}`` for a dense model).

    Args:
        model: The policy (its routing rule is read by :func:`router_spec`).
        outputs: The :func:`training_forward` outputs of this micro-batch.
        attention_mask: ``(B, T)`` of the micro-batch.
        weight: The loss weight; at 0 the loss is computed without a graph (a metric only).
        routed: Sequences with an attended token in the whole minibatch: the balance loss is a
            sum of per-sequence terms divided by it, so micro-batch shares add up exactly.
        rows: This micro-batch's fraction of the minibatch's rows: the load figures are
            statistics of one forward, averaged over micro-batches by rows.

    Returns:
        ``(aux, metrics)``: the unweighted loss share (scalar) and the ``moe/...`` metrics.
    """
    import torch

    router_logits: Sequence[Tensor] = getattr(outputs, "router_logits", None) or ()
    if not router_logits:
        return None, {}
    spec = router_spec(model)
    with torch.set_grad_enabled(weight > 0):  # weight 0: only the metric, no graph
        aux = sequence_balance_losses(router_logits, spec, mask=attention_mask).sum() / routed  # ()
    stats = {AUX_LOSS: float(aux.detach())}  # this micro-batch's exact share of the minibatch's loss
    for key, value in expert_load_metrics(router_logits, spec, mask=attention_mask, include_aux=False).items():
        stats[key] = value * rows
    return aux, stats
