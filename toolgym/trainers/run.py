"""A whole training run from a ``TrainConfig``: checks, model, trainer, loop, checkpoints, outputs.

``train(config)`` validates everything it can before any work (the model folder and its chat
template, a resume checkpoint's config, the PTX data), then runs the iterations, writing:

* ``config.yaml``: the full config (every default spelled out);
* ``metrics.jsonl`` (and TensorBoard events under ``tb/``): one row per iteration plus
  held-out evaluations (names in ``toolgym.trainers.metrics``);
* ``checkpoints/``: see ``toolgym.trainers.checkpoint``;
* ``reward.png``: the reward curve and held-out success.

>>> # cfg = TrainConfig.from_yaml("examples/configs/grpo_tiny.yaml"); result = train(cfg)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from toolgym.errors import ConfigError
from toolgym.policies.hf_model import check_model_dir
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.models.gold_episodes import gold_conversations
from toolgym.policies.template_cli import preflight_template
from toolgym.policies.template_probe import TemplateError, probe_template
from toolgym.rollouts.storage import load_episodes
from toolgym.trainers import metrics as m
from toolgym.trainers.checkpoint import check_compatible, latest_checkpoint, load_checkpoint, save_checkpoint
from toolgym.trainers.config import TrainConfig, env_source, load_rubric_for
from toolgym.trainers.grpo import GRPOTrainer
from toolgym.trainers.ppo import PPOTrainer
from toolgym.trainers.pretrain import base_checkpoint
from toolgym.trainers.sft import conversation_row

OnIteration = Callable[[dict[str, float]], None]


@dataclass
class RunResult:
    """What ``train`` produced."""

    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    """Metric rows of the iterations run by this call."""
    evaluations: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)


def check_tool_template(tokenizer: Any, where: str) -> None:
    """Refuse a tokenizer whose chat template cannot show tools, tool calls and tool results.

    ``probe_template`` renders a probe conversation in every message shape templates take
    (arguments as an object or a JSON string, tool messages with or without a name...), so a
    template such as DeepSeek's, which concatenates string arguments, is not refused.
    """
    fix = ("give the model folder a chat template that renders `tools`, assistant `tool_calls` and `tool` messages "
           "(e.g. the one toolgym.policies.models.build_tiny_model writes)")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model.path {where!r}: the tokenizer has no chat template; {fix}")
    try:
        probe_template(tokenizer)
    except TemplateError as exc:
        raise ConfigError(f"model.path {where!r}: {exc}; {fix}") from None


def load_policy(config: TrainConfig) -> tuple[Any, Any]:
    """The model and tokenizer to train (a local folder, or a cached tiny MoE), checked first."""
    if config.model.path is not None:
        folder = check_model_dir(config.model.path)
    elif config.model.tiny == "base":
        folder = check_model_dir(base_checkpoint())
    else:
        folder = cached_tiny_model(config.model.tiny or "kimi", seed=config.model.seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    check_tool_template(tokenizer, str(folder))
    # Prompts must equal what the model sees in deployment, and its calls must parse: refused before any work.
    preflight_template(
        tokenizer, where=f"model.path {str(folder)!r}", end_ids=_end_ids(folder, tokenizer),
        tool_format=config.env.tool_format or "hermes", chat_template_kwargs=config.model.chat_template_kwargs,
    )
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.model.dtype))
    model.to(config.model.device)  # type: ignore[arg-type]  # transformers types .to() as a decorator wrapper
    return model, tokenizer


def _end_ids(folder: Any, tokenizer: Any) -> list[int]:
    try:
        configured = GenerationConfig.from_pretrained(folder).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's eos only
        configured = None
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    return [int(i) for i in {*ids, tokenizer.eos_token_id} if i is not None]


def build_trainer(config: TrainConfig, model: Any, tokenizer: Any, **kwargs: Any) -> Any:
    """A ``GRPOTrainer`` or ``PPOTrainer`` per ``algorithm.name`` (kwargs go to the trainer)."""
    if "ptx_rows" not in kwargs and config.ptx.weight > 0:
        kwargs["ptx_rows"] = ptx_rows(config, tokenizer)
    if config.system.mode != "inprocess":  # roles on Ray (toolgym.trainers.system)
        from toolgym.trainers.system.driver import SystemTrainer

        return SystemTrainer(config, model, tokenizer, **kwargs)
    cls = PPOTrainer if config.algorithm.name == "ppo" else GRPOTrainer
    return cls(config, model, tokenizer, **kwargs)


def ptx_rows(config: TrainConfig, tokenizer: Any) -> list[Any]:
    """Supervised rows for the PTX loss: gold replays of the env's tasks, or a saved episodes file."""
    p = config.ptx
    if p.dataset is not None:
        if not Path(p.dataset).is_file():
            raise ConfigError(f"ptx.dataset {p.dataset!r} does not exist; write one with `toolgym rollout ... --out FILE`")
        return [conversation_row(tokenizer, e.messages, e.tools) for e in load_episodes(p.dataset) if e.scorable]
    seeds = range(config.env.task_seed + 10_000_000, config.env.task_seed + 10_000_000 + p.gold_tasks)
    convs = gold_conversations(config.env.id, seeds, compact=False, tool_format="hermes")
    return [conversation_row(tokenizer, c.messages, c.tools) for c in convs]


def prepare_out_dir(config: TrainConfig, resume: bool) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to resume from, refusing to overwrite a run silently."""
    out = Path(config.run.out_dir)
    found = latest_checkpoint(out)
    if resume:
        if found is None:
            raise ConfigError(f"--resume: {out} holds no checkpoint; run without --resume to start it")
        check_compatible(found, config)
        return out, found
    if found is not None or (out / "metrics.jsonl").exists():
        raise ConfigError(f"run.out_dir {str(out)!r} already holds a run; pass --resume to continue it from its latest checkpoint, or delete the folder, or choose another run.out_dir")
    return out, None


def preflight(config: TrainConfig, resume: bool, trainer_kwargs: dict[str, Any] | None = None) -> tuple[Path, Path | None]:
    """Every check that needs no model: run folder and resume checkpoint, env id and tool format, rubric.

    Fills ``trainer_kwargs["rubric"]`` with the loaded rubric when one was not given.
    """
    kwargs = trainer_kwargs if trainer_kwargs is not None else {}
    located = prepare_out_dir(config, resume)
    if "env" not in kwargs:
        env_source(config)  # an unknown env id or tool format fails here
    if "rubric" not in kwargs:
        kwargs["rubric"] = load_rubric_for(config)
    if config.system.mode != "inprocess" or config.system.pool == "ray":
        from toolgym.trainers.system.cluster import preflight as system_preflight

        system_preflight(config)  # cluster, placement, engine URLs
    return located


def train(config: TrainConfig, *, resume: bool = False, on_iteration: OnIteration | None = None,
          on_start: Callable[[Any], None] | None = None, **trainer_kwargs: Any) -> RunResult:
    """Run (or resume) the training run ``config`` describes. See the module docstring."""
    out, found = preflight(config, resume, trainer_kwargs)
    if config.run.torch_threads:
        torch.set_num_threads(config.run.torch_threads)
    model, tokenizer = load_policy(config)
    trainer = build_trainer(config, model, tokenizer, **trainer_kwargs)
    writer = m.MetricsWriter(out, tensorboard=config.run.tensorboard)
    result = RunResult(out_dir=out, notes=list(writer.notes))
    try:
        if found is not None:
            load_checkpoint(trainer, found)
            writer.truncate(trainer.iteration_index)  # rows after the checkpoint are redone
        else:
            config.to_yaml(out / "config.yaml")
            _evaluate(trainer, writer, result)
        if on_start is not None:
            on_start(trainer)
        r = config.run
        while trainer.iteration_index < r.iterations:
            row = trainer.iteration()
            writer.write(row)
            result.history.append(row)
            if on_iteration is not None:
                on_iteration(row)
            done = trainer.iteration_index
            if r.eval_every and done % r.eval_every == 0 and done < r.iterations:
                _evaluate(trainer, writer, result)
            if (r.checkpoint_every and done % r.checkpoint_every == 0) or done == r.iterations:
                result.checkpoint = save_checkpoint(trainer, out)
        if result.history:
            _evaluate(trainer, writer, result)
    finally:
        writer.close()
        trainer.close()
    if config.run.plots:
        result.plot = m.plot_run(out)
    return result


def _evaluate(trainer: Any, writer: m.MetricsWriter, result: RunResult) -> None:
    row = trainer.evaluate()
    if row:
        row = {m.ITERATION: float(trainer.iteration_index), **row}
        writer.write(row)
        result.evaluations.append(row)


def run_from_yaml(path: str | os.PathLike[str], **kwargs: Any) -> RunResult:
    """``train(TrainConfig.from_yaml(path))``."""
    return train(TrainConfig.from_yaml(path), **kwargs)
