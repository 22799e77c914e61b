"""Build a tiny MoE policy from nothing: train its tokenizer, make its config, draw its weights.

The result is a standard Hugging Face model directory (``config.json``, ``model.safetensors``,
``tokenizer.json``, the chat template...), loadable with ``AutoModelForCausalLM`` and
``AutoTokenizer`` or with ``toolgym.policies.hf_policy.HFPolicy.from_pretrained``.

Building takes a few seconds, so ``cached_tiny_model`` keeps one copy per recipe under the
system temporary directory, keyed by a hash of everything that goes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from toolgym.policies.models.configs import ModelKind, ModelSize, model_config, shape
from toolgym.policies.models.tokenizer import CORPUS_VERSION, IM_END, PAD, chat_template, train_tokenizer

CACHE_ENV = "TOOLGYM_MODEL_CACHE"
"""Environment variable naming the cache folder (default: ``<tmp>/toolgym-models``)."""


def build_tiny_model(
    kind: ModelKind = "kimi", out_dir: str | os.PathLike[str] = "tiny-model", seed: int = 0, *,
    size: ModelSize = "tiny", vocab_size: int = 4096, n_tasks: int = 300,
) -> Path:
    """Train a tokenizer, build a randomly initialised MoE model and save both to ``out_dir``.

    Args:
        kind: ``"kimi"`` (Kimi-K2 shape, DeepSeek-V3 architecture) or ``"qwen3"`` (Qwen3-MoE).
        out_dir: Folder to write; created if missing, files in it are overwritten.
        seed: Seed of the weight initialisation (the tokenizer is deterministic).
        size: ``"tiny"`` (CPU) or ``"0.5b"`` (GPU; builds half a billion float32 weights).
        vocab_size: Upper bound on the tokenizer's vocabulary.
        n_tasks: UnitConv conversations the tokenizer is trained on.

    Returns:
        The model directory.

    Example:
        ``build_tiny_model("qwen3", "/tmp/qwen3-tiny", seed=1)`` then
        ``HFPolicy.from_pretrained("/tmp/qwen3-tiny")``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    tokenizer = train_tokenizer(vocab_size=vocab_size, n_tasks=n_tasks)
    pad_id, end_id = tokenizer.convert_tokens_to_ids([PAD, IM_END])
    config = model_config(kind, size, vocab_size=len(tokenizer), pad_token_id=pad_id, eos_token_id=[end_id, pad_id])
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = [end_id, pad_id]
    model.generation_config.pad_token_id = pad_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def recipe_key(kind: str, seed: int, size: str = "tiny", vocab_size: int = 4096, n_tasks: int = 300) -> str:
    """A short hash of everything a built model depends on (shape, seed, tokenizer recipe, versions)."""
    import tokenizers
    import transformers

    recipe = {
        "kind": kind, "size": size, "seed": seed, "vocab_size": vocab_size, "n_tasks": n_tasks,
        "shape": shape(kind, size), "template": chat_template(), "corpus": CORPUS_VERSION,
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where ``cached_tiny_model`` keeps its models."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "toolgym-models")


def cached_tiny_model(kind: ModelKind = "kimi", seed: int = 0, *, vocab_size: int = 4096, n_tasks: int = 300) -> Path:
    """The directory of a tiny model, built on first use and reused afterwards.

    Safe when several processes ask at once: each builds into a private folder and renames it
    into place; the first rename wins and the others discard their copy.
    """
    target = cache_dir() / f"{kind}-tiny-s{seed}-{recipe_key(kind, seed, 'tiny', vocab_size, n_tasks)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
    build_tiny_model(kind, scratch, seed, vocab_size=vocab_size, n_tasks=n_tasks)
    try:
        scratch.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(scratch, ignore_errors=True)
    return target
