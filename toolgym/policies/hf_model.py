"""Loading a local Hugging Face causal LM with errors that say which file is missing.

Any folder written by ``save_pretrained`` works: the tiny MoE models from
``toolgym.policies.models``, a fine-tuned checkpoint, a copied model. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from toolgym.errors import ConfigError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_HINT = "build one with toolgym.policies.models.build_tiny_model(kind, out_dir) or save a model with save_pretrained(out_dir)"


class ModelDirError(ConfigError):
    """A model folder is missing, or lacks the config, weights, tokenizer or chat template."""


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """Raise ``ModelDirError`` naming the path and the missing part; return the path otherwise."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelDirError(f"model directory {str(folder)!r} does not exist; {_HINT}")
    if not folder.is_dir():
        raise ModelDirError(f"{str(folder)!r} is a file, but a model directory (config.json, weights, tokenizer) was expected")
    if not (folder / "config.json").is_file():
        raise ModelDirError(f"model directory {str(folder)!r} has no config.json, so it is not a Hugging Face model; {_HINT}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelDirError(
            f"model directory {str(folder)!r} has no weights (expected one of {', '.join(WEIGHT_FILES)}); {_HINT}"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelDirError(
            f"model directory {str(folder)!r} has no tokenizer (expected one of {', '.join(TOKENIZER_FILES)}); "
            "save it next to the model with tokenizer.save_pretrained(model_dir)"
        )
    return folder


def load_model_and_tokenizer(path: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local folder for inference (eval mode, on ``device``).

    Args:
        path: The model folder.
        device: Torch device string ("cpu", "cuda", "cuda:1").
        dtype: Weight dtype name ("float32", "bfloat16", "float16").

    Raises:
        ModelDirError: The folder, its config, weights or tokenizer is missing, or the tokenizer
            has no chat template.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = check_model_dir(path)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelDirError(
            f"the tokenizer in {str(folder)!r} has no chat template (expected chat_template.jinja or a "
            "'chat_template' entry in tokenizer_config.json); a policy needs one to render conversations"
        )
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    model = model.to(device)  # type: ignore[arg-type]  # transformers' stub types .to's self argument oddly
    model.eval()
    return model, tokenizer
