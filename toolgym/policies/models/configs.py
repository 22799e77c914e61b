"""Mixture-of-Experts model configs: Kimi-K2-shaped (DeepSeek-V3 architecture) and Qwen3-MoE.

Each comes in two sizes: ``"tiny"`` (about 1-3M parameters, for CPU tests and examples) and
``"0.5b"`` (about half a billion parameters in total, for a single GPU). Shapes live in plain
dicts so that a reader sees every number in one place; ``model_config`` turns them into a
transformers config.

Kimi K2 is a DeepSeek-V3 model with different numbers: multi-head latent attention (MLA,
low-rank query and key-value projections with a decoupled RoPE part), one dense first layer,
then MoE layers with one shared expert plus top-k routed experts and a single routing group.
The tiny and 0.5B shapes keep those traits at smaller widths.

>>> shape("kimi", "tiny")["first_k_dense_replace"]
1
"""

from __future__ import annotations

from typing import Any, Literal

from toolgym.errors import ConfigError

ModelKind = Literal["kimi", "qwen3"]
ModelSize = Literal["tiny", "0.5b"]

NOMINAL_VOCAB = 32768
"""Vocabulary assumed by the 0.5B shapes when no tokenizer fixes it."""

_KIMI_COMMON: dict[str, Any] = {
    "n_shared_experts": 1,  # Kimi K2: one shared expert beside the routed ones
    "n_group": 1,  # Kimi K2 routes over a single group (DeepSeek-V3 uses 8)
    "topk_group": 1,
    "first_k_dense_replace": 1,  # Kimi K2: only the first layer is dense
    "routed_scaling_factor": 2.827,
    "norm_topk_prob": True,
    "rope_interleave": True,
    "tie_word_embeddings": False,
}

_SHAPES: dict[tuple[str, str], dict[str, Any]] = {
    ("kimi", "tiny"): {
        **_KIMI_COMMON,
        "hidden_size": 128, "intermediate_size": 384, "moe_intermediate_size": 64,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
        "n_routed_experts": 8, "num_experts_per_tok": 2,
        "q_lora_rank": 64, "kv_lora_rank": 32,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16, "head_dim": 16,
        "max_position_embeddings": 4096,
    },
    ("kimi", "0.5b"): {
        **_KIMI_COMMON,
        "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 352,
        "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 16,
        "n_routed_experts": 32, "num_experts_per_tok": 4,
        "q_lora_rank": 384, "kv_lora_rank": 256,
        "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64, "head_dim": 32,
        "max_position_embeddings": 8192,
    },
    ("qwen3", "tiny"): {
        "hidden_size": 128, "intermediate_size": 384, "moe_intermediate_size": 96,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
        "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True,
        "max_position_embeddings": 4096, "tie_word_embeddings": False,
    },
    ("qwen3", "0.5b"): {
        "hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 352,
        "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64,
        "num_experts": 32, "num_experts_per_tok": 4, "norm_topk_prob": True,
        "max_position_embeddings": 8192, "tie_word_embeddings": False,
    },
}


def shape(kind: str, size: str = "tiny") -> dict[str, Any]:
    """The architecture numbers of ``kind`` at ``size`` (a copy, safe to edit)."""
    try:
        return dict(_SHAPES[(kind, size)])
    except KeyError:
        raise ConfigError(
            f"no model shape for kind={kind!r}, size={size!r}; kinds are 'kimi' and 'qwen3', sizes 'tiny' and '0.5b'"
        ) from None


def model_config(
    kind: ModelKind, size: ModelSize = "tiny", *, vocab_size: int = NOMINAL_VOCAB,
    pad_token_id: int = 0, eos_token_id: int | list[int] = 2, **overrides: Any,
) -> Any:
    """A transformers config for a Kimi-K2-shaped or Qwen3-MoE model.

    Args:
        kind: ``"kimi"`` (``DeepseekV3Config``) or ``"qwen3"`` (``Qwen3MoeConfig``).
        size: ``"tiny"`` or ``"0.5b"``.
        vocab_size: Size of the tokenizer's vocabulary.
        pad_token_id: Padding id of the tokenizer.
        eos_token_id: End-of-turn id(s), used by ``model.generate``.
        **overrides: Any config field, replacing the shape's value.

    Router logits stay off (``output_router_logits=False``): generation with them on fails in
    transformers, and a trainer that wants the auxiliary loss turns them on for its forward.
    """
    from transformers import DeepseekV3Config, Qwen3MoeConfig

    fields: dict[str, Any] = {**shape(kind, size), **overrides}
    common: dict[str, Any] = {
        "vocab_size": vocab_size, "pad_token_id": pad_token_id, "eos_token_id": eos_token_id,
        "bos_token_id": None, "output_router_logits": False,
    }
    config_class = DeepseekV3Config if kind == "kimi" else Qwen3MoeConfig
    return config_class(**common, **fields)


def count_parameters(config: Any) -> dict[str, int]:
    """Total and active-per-token parameter counts, built on the meta device (no memory used).

    Active parameters count the shared expert and ``num_experts_per_tok`` routed experts of
    each MoE layer, not all of them.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    routed = config.n_routed_experts if hasattr(config, "n_routed_experts") else config.num_experts
    expert_params = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    inactive = expert_params * (routed - config.num_experts_per_tok) // routed
    return {"total": total, "active": total - inactive}
