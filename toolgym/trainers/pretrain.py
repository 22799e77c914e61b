"""Pretrain the shipped tiny base model: a Kimi-shaped MoE trained on gold episodes of every domain.

Kimi K2's recipe starts RL from a pretrained base. Ours is trained here, on CPU, from
synthesized conversations: seeded tasks of all four shipped domains replayed with their gold
solutions (``toolgym.policies.models.gold_episodes``), rendered with the compact template, trained
with a plain language-model loss on every token. The demo's task family (UnitConv
``convert_store``) and the demo's seed ranges are left out, so the base has never seen a
demo task; it has seen the neighbouring UnitConv families and the other domains.

``scripts/pretrain_base.py`` runs this and writes the folder that ships as
``toolgym/trainers/checkpoints/tiny-base``; ``pretrain.json`` in it records the settings, the
data, the time and the loss.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from toolgym.policies.hf_model import load_model_and_tokenizer
from toolgym.policies.models.configs import model_config
from toolgym.policies.models.gold_episodes import DOMAINS, gold_conversations
from toolgym.policies.models.tokenizer import IM_END, PAD, train_compact_tokenizer
from toolgym.trainers.demo_tasks import DEMO_ENV, DEMO_FAMILY, SPLIT_SEEDS
from toolgym.trainers.sft import SFTConfig, SFTResult, SFTRow, _batch, conversation_row, masked_lm_loss, train_rows

BASE_DIR_NAME = "tiny-base"


@dataclass
class PretrainConfig:
    """Settings of ``pretrain``; the defaults made the shipped checkpoint."""

    seeds_per_domain: dict[str, int] = field(default_factory=lambda: {
        "toolgym/unitconv-v0": 8000, "toolgym/retail-v0": 1000, "toolgym/calendar_email-v0": 1000, "toolgym/banking-v0": 1000,
    })
    """Task seeds replayed per domain, from 0 (UnitConv keeps only its non-demo families: ~3/4)."""
    vocab_size: int = 2048
    tokenizer_tasks: int = 150
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields replacing the tiny Kimi shape (for example ``{"hidden_size": 192}``)."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=3e-3, batch_size=16, epochs=3.0, max_len=256, warmup_steps=50, log_every=50))
    seed: int = 0
    threads: int = 2
    init_from: str | None = None
    """A saved base to continue training (its tokenizer is kept); None: start from random weights."""


def base_checkpoint() -> Path:
    """The folder of the shipped base model (inside the installed package)."""
    return Path(str(resources.files("toolgym.trainers").joinpath("checkpoints", BASE_DIR_NAME)))


def pretraining_rows(tokenizer: Any, seeds_per_domain: dict[str, int], max_len: int, seed: int = 0) -> list[SFTRow]:
    """Language-model rows (mask 1 everywhere) of gold conversations from the given domains."""
    rows = []
    for env_id, count in seeds_per_domain.items():
        if env_id == DEMO_ENV and seed + count > min(SPLIT_SEEDS.values()):
            raise ValueError(f"pretraining seeds of {env_id} must stay below {min(SPLIT_SEEDS.values())} (the demo splits)")
        keep = (lambda t: t.metadata.get("family") != DEMO_FAMILY) if env_id == DEMO_ENV else None
        for conv in gold_conversations(env_id, range(seed, seed + count), keep=keep):
            row = conversation_row(tokenizer, conv.messages, conv.tools, all_tokens=True)
            rows.append(SFTRow(row.ids[:max_len], row.mask[:max_len]))
    return rows


def build_base_model(tokenizer: Any, overrides: dict[str, Any], seed: int) -> Any:
    """A freshly initialised tiny Kimi-shaped MoE sized for ``tokenizer``."""
    pad_id, end_id = tokenizer.convert_tokens_to_ids([PAD, IM_END])
    config = model_config("kimi", "tiny", vocab_size=len(tokenizer), pad_token_id=pad_id, eos_token_id=[end_id, pad_id], **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = [end_id, pad_id]
    model.generation_config.pad_token_id = pad_id
    return model


def pretrain(out_dir: str | os.PathLike[str], config: PretrainConfig | None = None, *, log: Any = print) -> SFTResult:
    """Train the base model from nothing and save it (weights as safetensors) to ``out_dir``."""
    config = config or PretrainConfig()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    previous: dict[str, Any] = {}
    if config.init_from:
        model, tokenizer = load_model_and_tokenizer(config.init_from)
        record_file = Path(config.init_from) / "pretrain.json"
        previous = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    else:
        tokenizer = train_compact_tokenizer(config.vocab_size, config.tokenizer_tasks, seed=config.seed)
        model = build_base_model(tokenizer, config.model_overrides, config.seed)
    rows = pretraining_rows(tokenizer, config.seeds_per_domain, config.sft.max_len, config.seed)
    data_s = time.perf_counter() - started
    log(f"data: {len(rows)} conversations, {sum(len(r.ids) for r in rows)} tokens, built in {data_s:.0f}s")
    result = train_rows(model, rows, config.sft, pad_id=tokenizer.pad_token_id, log=lambda s, loss: log(f"step {s}: loss {loss:.3f}"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    record = {
        "config": asdict(config), "parameters": params, "conversations": len(rows),
        "tokens_per_epoch": sum(len(r.ids) for r in rows), "steps": result.steps, "tokens_seen": result.tokens,
        "train_seconds": round(result.seconds, 1), "data_seconds": round(data_s, 1), "final_loss": result.final_loss,
        "loss_curve": result.losses, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
        "previous_runs": [*previous.get("previous_runs", []), _summary(previous)] if previous else [],
        "total_steps": result.steps + sum(r["steps"] for r in [*previous.get("previous_runs", []), _summary(previous)] if previous),
    }
    (out / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"saved {params} parameters to {out}; {result.steps} steps in {result.seconds:.0f}s, final loss {result.final_loss:.3f}")
    return result


def heldout_lm_loss(model_dir: str | os.PathLike[str], n_per_domain: int = 8, max_len: int = 256) -> float:
    """Mean next-token loss of a saved model on gold conversations it was not trained on.

    The conversations come from seeds 900,000 and up: above the default pretraining seeds,
    below the demo splits, and without the demo family.
    """
    model, tokenizer = load_model_and_tokenizer(model_dir)
    rows = pretraining_rows(tokenizer, dict.fromkeys(DOMAINS, n_per_domain), max_len, seed=900_000)
    ids, attention, labels = _batch(rows, tokenizer.pad_token_id, max_len)
    with torch.no_grad():
        loss, _ = masked_lm_loss(model, ids, attention, labels)
    return float(loss)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """The part of an earlier run's record kept when training continues from it."""
    keys = ("config", "steps", "tokens_seen", "train_seconds", "final_loss", "loss_curve", "load_average_at_end")
    return {k: record[k] for k in keys if k in record}
