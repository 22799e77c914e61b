"""Tiny Mixture-of-Experts policies built offline: configs, an in-process tokenizer, weights.

Nothing here imports torch or transformers until a function that needs them runs.

>>> from toolgym.policies.models import shape
>>> shape("qwen3", "tiny")["num_experts"]
8
"""

from toolgym.policies.models.build import build_tiny_model, cache_dir, cached_tiny_model, recipe_key
from toolgym.policies.models.configs import ModelKind, ModelSize, count_parameters, model_config, shape
from toolgym.policies.models.tokenizer import (
    KIMI_MARKERS,
    KIMI_SPECIAL_TOKENS,
    SPECIAL_TOKENS,
    TEXT_TOKENS,
    chat_template,
    compact_corpus,
    train_compact_tokenizer,
    train_tokenizer,
    training_corpus,
)

__all__ = [
    "KIMI_MARKERS",
    "KIMI_SPECIAL_TOKENS",
    "SPECIAL_TOKENS",
    "TEXT_TOKENS",
    "ModelKind",
    "ModelSize",
    "build_tiny_model",
    "cache_dir",
    "cached_tiny_model",
    "chat_template",
    "compact_corpus",
    "count_parameters",
    "model_config",
    "recipe_key",
    "shape",
    "train_compact_tokenizer",
    "train_tokenizer",
    "training_corpus",
]
