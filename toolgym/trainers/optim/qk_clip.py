"""QK-Clip (Kimi K2): cap each attention head's largest pre-softmax logit at τ by rescaling weights.

For head h, ``S_h = max over the batch of q_i·k_j · scaling`` and ``γ_h = min(1, τ / S_h)``. Fused
attention kernels never materialize the logits, so a forward pre-hook on every attention module
recomputes q and k from the module's own input and weights (float32, per head, masked the way
the forward masks) and takes the maximum. Rescaling then multiplies the head's logits by γ_h:

- **MLA** (DeepSeek-V3 / Kimi K2): the head's q "nope" rows of ``q_b_proj`` (or ``q_proj``) by
  √γ, its q rotary rows by γ, its k "nope" rows of ``kv_b_proj`` by √γ. Value rows and
  ``kv_a_proj_with_mqa`` (the shared rotary key) are never touched. Exact per head.
- **Qwen3-MoE** has RMSNorm on q and k per head *after* the projections, so scaling rows of W_q or
  W_k changes nothing: the norm divides the scale out. The logit scale lives in the ``q_norm`` and
  ``k_norm`` weights, which all heads of a layer share. QK-Clip therefore scales both norm weights
  by √γ with ``γ = min_h γ_h``: the whole layer is clipped at its hottest head's rate (every
  head's logits shrink by γ, none ends above τ). Per-head clipping would need per-head norm weights,
  which this architecture does not have.

Two timings for ``clip()``, which :class:`~toolgym.trainers.optim.muonclip.MuonClip` runs after
each step:

- ``"observed"`` (K2's algorithm): uses the maxima seen in the grad-enabled (training) forwards
  since the last clip, i.e. on the weights *before* the step. No extra forward; the logits can
  end a step's growth above τ (by what one update adds) before the next clip pulls them back.
- ``"remeasure"``: re-runs the batches of those training forwards without grad on the updated
  weights and clips layer by layer inside that forward (a later layer sees the already-clipped
  earlier ones), so afterwards no head's logit on those batches is above τ. One extra no-grad
  forward per micro-batch.

``clip_on(input_ids)`` does the remeasure pass for any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

QK_MAX_LOGIT = "optim/qk_max_logit"
"""Largest pre-softmax attention logit over all heads and layers, before clipping."""
QK_CLIPPED_HEADS = "optim/qk_clipped_heads"
"""Heads whose max logit was above τ and were rescaled this step."""
QK_LAYER_MAX_LOGIT = "optim/qk_max_logit/layer{layer}"
"""Largest pre-softmax logit of one layer, before clipping."""

Timing = Literal["observed", "remeasure"]
"""When QK-Clip's logits are measured: in the training forward, or again after the step (see module doc)."""
Mode = Literal["off", "observe", "measure", "clip"]
"""off: hooks idle; observe: record grad-enabled (training) forwards; measure: record every forward; clip: rescale in the forward."""


@dataclass
class QKClipReport:
    """What one QK-Clip pass saw and did.

    Attributes:
        tau: The threshold.
        max_logits: Per layer index, the per-head maxima measured before clipping.
        clipped_heads: Heads above τ (rescaled; in Qwen3 their whole layer is scaled).
    """

    tau: float
    max_logits: dict[int, list[float]] = field(default_factory=dict)
    clipped_heads: int = 0

    @property
    def max_logit(self) -> float:
        """Largest logit over all layers and heads (``-inf`` when nothing was measured)."""
        return max((max(v) for v in self.max_logits.values()), default=float("-inf"))

    def metrics(self) -> dict[str, float]:
        """Flat metrics under the ``optim/qk_*`` names above."""
        out = {QK_MAX_LOGIT: self.max_logit, QK_CLIPPED_HEADS: float(self.clipped_heads)}
        out.update({QK_LAYER_MAX_LOGIT.format(layer=i): max(v) for i, v in self.max_logits.items()})
        return out


def _valid_pairs(mask: Tensor | None, q_len: int, device: Any) -> Tensor:
    """``(B or 1, 1, T, T)`` bool: which (query, key) pairs the forward lets attend."""
    import torch

    if mask is None:  # sdpa passes None when plain causal masking is enough
        return torch.ones(q_len, q_len, dtype=torch.bool, device=device).tril()[None, None]
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2  # additive float mask: 0 keeps, a huge negative drops


def _mha_qk(module: Any, x: Tensor, cos_sin: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Qwen3 q ``(B, H, T, d)`` and k ``(B, H, T, d)`` (GQA keys repeated), normed and rotated."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import apply_rotary_pos_emb

    shape = (*x.shape[:-1], -1, module.head_dim)
    q = module.q_norm(module.q_proj(x).view(shape)).transpose(1, 2)  # (B, H, T, d)
    k = module.k_norm(module.k_proj(x).view(shape)).transpose(1, 2)  # (B, Hkv, T, d)
    q, k = apply_rotary_pos_emb(q, k, *cos_sin)
    return q, k.repeat_interleave(module.num_key_value_groups, dim=1)


def _mla_qk(module: Any, x: Tensor, cos_sin: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """DeepSeek-V3 q ``(B, H, T, nope+rope)`` and k of the same shape (shared rotary key broadcast)."""
    import torch
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds

    batch, steps = x.shape[:-1]
    if module.q_lora_rank is None:
        q = module.q_proj(x)
    else:
        q = module.q_b_proj(module.q_a_layernorm(module.q_a_proj(x)))
    q = q.view(batch, steps, -1, module.qk_head_dim).transpose(1, 2)  # (B, H, T, dq)
    q_nope, q_rot = q.split([module.qk_nope_head_dim, module.qk_rope_head_dim], dim=-1)
    kv, k_rot = module.kv_a_proj_with_mqa(x).split([module.kv_lora_rank, module.qk_rope_head_dim], dim=-1)
    kv = module.kv_a_layernorm(kv).view(batch, 1, steps, module.kv_lora_rank)
    k_rot = k_rot.view(batch, 1, steps, module.qk_rope_head_dim)
    rotate = ds.apply_rotary_pos_emb_interleave if module.config.rope_interleave else ds.apply_rotary_pos_emb
    q_rot, k_rot = rotate(q_rot, k_rot, *cos_sin)
    keys, _ = module.expand_kv(kv, k_rot)  # (B, H, T, dq)
    return torch.cat((q_nope, q_rot), dim=-1), keys


def head_max_logits(module: Any, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor],
                    attention_mask: Tensor | None, query_mask: Tensor | None = None) -> Tensor:
    """``(H,)`` largest pre-softmax logit of each head of one attention module on one input.

    Computed in float32, one head at a time (peak memory ``B·T·T`` floats), over the pairs the
    forward's ``attention_mask`` lets attend, and only for queries where the ``(B, T)``
    ``query_mask`` is 1: a padding position's query attends too, but its output is thrown away.
    """
    import torch

    with torch.no_grad():
        qk = _mla_qk if hasattr(module, "kv_b_proj") else _mha_qk
        q, k = qk(module, hidden_states, position_embeddings)
        valid = _valid_pairs(attention_mask, q.shape[2], q.device)  # (B|1, 1, T, T)
        if query_mask is not None and query_mask.shape == q.shape[:1] + q.shape[2:3]:
            valid = valid & query_mask.bool().to(q.device)[:, None, :, None]  # (B, 1, T, T)
        out = []
        for h in range(q.shape[1]):
            logits = (q[:, h].float() @ k[:, h].float().transpose(-1, -2)) * module.scaling  # (B, T, T)
            out.append(logits.masked_fill(~valid[:, 0], float("-inf")).amax())
        return torch.stack(out)


def _rescale(module: Any, gammas: Tensor) -> None:
    """Multiply each head's logits by ``gammas[h]`` (≤ 1) through the weights (see module doc)."""
    import torch

    with torch.no_grad():
        if hasattr(module, "kv_b_proj"):
            q_weight = (module.q_proj if module.q_lora_rank is None else module.q_b_proj).weight
            nope, dq = module.qk_nope_head_dim, module.qk_head_dim
            dk = nope + module.v_head_dim
            for h, gamma in enumerate(gammas.tolist()):
                if gamma >= 1.0:
                    continue
                q_weight[h * dq : h * dq + nope] *= gamma**0.5  # q nope
                q_weight[h * dq + nope : (h + 1) * dq] *= gamma  # q rope: the rotary key is shared, so q takes all of γ
                module.kv_b_proj.weight[h * dk : h * dk + nope] *= gamma**0.5  # k nope; value rows untouched
            return
        gamma = float(torch.clamp(gammas.min(), max=1.0))
        if gamma < 1.0:  # q_norm/k_norm weights are shared by the layer's heads: clip the layer at its worst head
            module.q_norm.weight *= gamma**0.5
            module.k_norm.weight *= gamma**0.5


class QKClip:
    """Measure attention logits with hooks and cap them at ``tau`` by rescaling q/k weights.

    Args:
        model: A DeepSeek-V3 (Kimi) or Qwen3-MoE causal LM.
        tau: Largest allowed pre-softmax logit (K2 uses 100; tiny models show the effect lower).
        timing: ``"observed"`` (K2) or ``"remeasure"`` (exact on the step's batches); see the module doc.

    Example::

        qk = QKClip(model, tau=30.0)
        loss = model(ids).loss          # observed: a grad-enabled forward
        loss.backward(); opt.step()
        report = qk.clip()              # heads above 30 rescaled; report.metrics() for logging
    """

    def __init__(self, model: Any, tau: float = 100.0, *, timing: Timing = "observed") -> None:
        if tau <= 0:
            raise ValueError(f"QK-Clip tau must be > 0, got {tau}")
        if timing not in ("observed", "remeasure"):
            raise ValueError(f"QK-Clip timing must be 'observed' or 'remeasure', got {timing!r}")
        self.model = model
        self.tau = float(tau)
        self.timing: Timing = timing
        self._batches: list[tuple[Any, Any]] = []
        self._query_mask: Tensor | None = None  # the (B, T) attention mask of the forward in progress
        self.mode: Mode = "observe"
        self._observed: dict[int, Tensor] = {}
        self._report: QKClipReport | None = None
        self._modules = [(i, layer.self_attn) for i, layer in enumerate(model.model.layers)]
        if not all(hasattr(m, "kv_b_proj") or hasattr(m, "q_norm") for _, m in self._modules):
            raise ValueError(f"QKClip knows DeepSeek-V3 (MLA) and Qwen3-MoE attention; got {type(model).__name__}")
        self._hooks = [m.register_forward_pre_hook(self._make_hook(i), with_kwargs=True) for i, m in self._modules]
        self._hooks.append(model.register_forward_pre_hook(self._keep_batch, with_kwargs=True))

    def _keep_batch(self, _model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Note the forward's padding mask; remember a training forward's batch, for the remeasure timing."""
        import torch

        mask = kwargs.get("attention_mask")
        self._query_mask = mask if mask is not None and mask.ndim == 2 else None
        if self.timing == "remeasure" and self.mode == "observe" and torch.is_grad_enabled():
            ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else (args[0] if args else None)
            if ids is None:
                raise ValueError("QK-Clip timing 'remeasure' needs input_ids in the training forward (not inputs_embeds)")
            self._batches.append((ids.detach(), kwargs.get("attention_mask")))

    def _make_hook(self, index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            import torch

            if self.mode == "off" or (self.mode == "observe" and not torch.is_grad_enabled()):
                return  # generation and no-grad log-prob passes are not training forwards
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            if cache is not None and cache.get_seq_length(module.layer_idx) > 0:
                return  # decoding with earlier tokens cached: not a whole-batch measurement
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            found = head_max_logits(module, hidden, kwargs["position_embeddings"], kwargs.get("attention_mask"),
                                    self._query_mask)
            if self.mode != "clip":
                seen = self._observed.get(index)
                self._observed[index] = found if seen is None else torch.maximum(seen, found)
            else:
                self._apply(index, module, found)

        return hook

    def _apply(self, index: int, module: Any, max_logits: Tensor) -> None:
        import torch

        report = self._report if self._report is not None else QKClipReport(self.tau)
        report.max_logits[index] = max_logits.tolist()
        over = max_logits > self.tau
        report.clipped_heads += int(over.sum())
        gammas = torch.where(over, self.tau / max_logits.clamp(min=1e-12), torch.ones_like(max_logits))
        _rescale(module, gammas)
        self._report = report

    def clip(self) -> QKClipReport:
        """Rescale heads whose max logit is above τ, by the configured timing; reset the record.

        With ``"remeasure"`` and several micro-batches, the report holds each head's largest
        pre-clip logit over the passes and the sum of their clipped-head counts.
        """
        if self.timing == "remeasure":
            batches, self._batches, self._observed = self._batches, [], {}
            report = QKClipReport(self.tau)
            for ids, mask in batches:
                one = self.clip_on(ids, mask)
                report.max_logits = {i: [max(a, b) for a, b in zip(report.max_logits.get(i, v), v, strict=True)]
                                     for i, v in one.max_logits.items()}
                report.clipped_heads += one.clipped_heads
            return report
        self._report = QKClipReport(self.tau)
        modules = dict(self._modules)
        for index in sorted(self._observed):
            self._apply(index, modules[index], self._observed[index])
        self._observed = {}
        report, self._report = self._report, None
        return report

    def clip_on(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> QKClipReport:
        """Measure on the current weights and clip layer by layer in one no-grad forward."""
        self._report = QKClipReport(self.tau)
        self._run("clip", input_ids, attention_mask)
        report, self._report = self._report, None
        return report

    def measure(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> dict[int, list[float]]:
        """Per layer, the per-head max logits of the current weights on a batch (changes nothing)."""
        saved = self._observed
        self._observed = {}
        try:
            self._run("measure", input_ids, attention_mask)
            return {i: v.tolist() for i, v in sorted(self._observed.items())}
        finally:
            self._observed = saved

    def _run(self, mode: Mode, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        import torch

        previous, self.mode = self.mode, mode
        try:
            with torch.no_grad():
                self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        finally:
            self.mode = previous

    def remove(self) -> None:
        """Take the hooks off the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
