"""Checkpoints: everything needed to continue a run as if it had never stopped.

A checkpoint folder ``<out_dir>/checkpoints/iter-<n>/`` holds:

* ``model/``: the policy as a standard Hugging Face folder (loadable by ``HFPolicy``);
* ``state.pt``: exact model tensors, every optimizer's state, python/numpy/torch RNG states,
  the trainer's own state (iteration = data position, shuffle generator, value model) and the
  config fingerprint;
* ``config.yaml``: the config that produced it.

Files are written to a scratch folder and renamed into place, and ``latest`` (a text file
naming the newest folder) is updated last, so a run killed mid-save resumes from the previous
complete checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolgym.errors import ConfigError
from toolgym.trainers.config import TrainConfig

LATEST = "latest"


def checkpoint_root(out_dir: str | os.PathLike[str]) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(out_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(trainer: Any, out_dir: str | os.PathLike[str]) -> Path:
    """Write a checkpoint of ``trainer`` (a GRPO/PPO trainer) and point ``latest`` at it."""
    root = checkpoint_root(out_dir)
    name = f"iter-{trainer.iteration_index:06d}"
    final, scratch = root / name, root / f".{name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    trainer.model.save_pretrained(scratch / "model")
    trainer.tokenizer.save_pretrained(scratch / "model")
    state = {
        "fingerprint": trainer.config.fingerprint(),
        "model": trainer.model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in trainer.optimizers().items()},
        "rng": rng_state(),
        "trainer": trainer.extra_state(),
    }
    torch.save(state, scratch / "state.pt")
    trainer.config.to_yaml(scratch / "config.yaml")
    shutil.rmtree(final, ignore_errors=True)
    scratch.rename(final)
    tmp = root / f".{LATEST}.tmp"
    tmp.write_text(name, encoding="utf-8")
    tmp.replace(root / LATEST)
    return final


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    pointer = checkpoint_root(out_dir) / LATEST
    if not pointer.is_file():
        return None
    folder = checkpoint_root(out_dir) / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / "state.pt").is_file() else None


def check_compatible(folder: Path, config: TrainConfig) -> None:
    """Refuse a checkpoint written under a different config (naming the differing fields)."""
    saved_file = folder / "config.yaml"
    saved = TrainConfig.from_yaml(saved_file) if saved_file.is_file() else None
    if saved is not None and saved.fingerprint() == config.fingerprint():
        return
    differing = _differences(saved.model_dump(mode="json"), config.model_dump(mode="json")) if saved else ["(unknown)"]
    differing = [d for d in differing if d.split(".")[0] != "run" or d.split(".")[1] in ("seed",)]
    raise ConfigError(
        f"cannot resume from {folder}: it was written by another config (differs in {', '.join(differing) or 'fingerprint'}). "
        "Resume with the run's own config.yaml, or start a new run with another run.out_dir."
    )


def load_checkpoint(trainer: Any, folder: str | os.PathLike[str]) -> None:
    """Restore model, optimizers, RNG states and trainer state from ``folder``."""
    folder = Path(folder)
    check_compatible(folder, trainer.config)
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    trainer.model.load_state_dict(state["model"])
    for key, optimizer in trainer.optimizers().items():
        optimizer.load_state_dict(state["optimizers"][key])
    trainer.load_extra_state(state["trainer"])
    set_rng_state(state["rng"])


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
