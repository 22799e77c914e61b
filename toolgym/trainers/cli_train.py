"""``toolgym train CONFIG``: a training run with a progress bar and a one-line summary per iteration.

    toolgym train examples/configs/grpo_tiny.yaml
    toolgym train examples/configs/grpo_tiny.yaml --resume          # continue after a kill
    toolgym train examples/configs/grpo_tiny.yaml --iterations 20 --out runs/longer
    toolgym train examples/configs/grpo_ray_async.yaml --ray-address auto   # roles on a Ray cluster

Config errors (unknown fields, contradictions, a model folder whose template cannot show tool
calls, a resume from another config) are reported before any model is loaded or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from toolgym.trainers import metrics as m
from toolgym.trainers.config import TrainConfig

SUMMARY = (
    (m.REWARD_MEAN, "reward", "{:.3f}"), (m.LOSS, "loss", "{:+.4f}"), (m.GRAD_NORM, "|g|", "{:.2f}"),
    (m.UNSCORABLE, "unscorable", "{:.0f}"), (m.ZERO_VARIANCE_GROUPS, "zero-var", "{:.0f}"),
    (m.OVER_BUDGET, "over-budget", "{:.0f}"), (m.AUX_LOSS, "aux", "{:.3f}"),
)


def summary_line(row: dict[str, float]) -> str:
    """The per-iteration summary: reward, loss, grad norm, the silent-failure counters, timings."""
    parts = [f"iter {int(row.get(m.ITERATION, 0)) + 1}"]
    for key, label, fmt in SUMMARY:
        if key in row:
            parts.append(f"{label} {fmt.format(row[key])}")
    skipped = {k.removeprefix(m.SKIPPED_PREFIX): v for k, v in row.items() if k.startswith(m.SKIPPED_PREFIX) and v}
    if skipped:
        parts.append("skipped " + ",".join(f"{k}={v:.0f}" for k, v in skipped.items()))
    times = [(k.removeprefix(m.TIME_PREFIX).removesuffix("_s"), v) for k, v in row.items()
             if k.startswith(m.TIME_PREFIX) and k != m.TIME_PREFIX + "rollout_s"]
    parts.append(" ".join(f"{k} {v:.1f}s" for k, v in times))
    return " | ".join(parts)


def train_cli(config_path: Path, *, resume: bool, iterations: int | None, out: Path | None, console: Any,
              ray_address: str | None = None) -> None:
    """Load, override, validate, then train with a rich progress bar."""
    from toolgym.trainers.run import preflight, train  # torch and transformers load only when training starts

    cfg = TrainConfig.from_yaml(config_path)
    overrides: dict[str, Any] = {}
    if iterations is not None:
        overrides["iterations"] = iterations
    if out is not None:
        overrides["out_dir"] = str(out)
    if overrides:
        cfg = TrainConfig.from_dict({**cfg.model_dump(mode="json"), "run": {**cfg.run.model_dump(mode="json"), **overrides}})
    if ray_address is not None:  # a cluster for the roles (``toolgym.trainers.system``)
        cfg = TrainConfig.from_dict({**cfg.model_dump(mode="json"), "system": {**cfg.system.model_dump(mode="json"), "address": ray_address}})
    preflight(cfg, resume)  # config errors before the progress bar and the model
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{cfg.algorithm.name}/{cfg.algorithm.loss} on {cfg.env.id}", total=cfg.run.iterations)

        def on_start(trainer: Any) -> None:
            progress.update(bar, completed=trainer.iteration_index)

        def on_iteration(row: dict[str, float]) -> None:
            progress.console.print(summary_line(row))
            progress.advance(bar)

        result = train(cfg, resume=resume, on_iteration=on_iteration, on_start=on_start)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    for row in result.evaluations:
        console.print(f"held-out after {int(row[m.ITERATION])} iterations: success {row[m.HELDOUT_SUCCESS]:.3f}, "
                      f"mean score {row[m.HELDOUT_SCORE]:.3f}")
    console.print(f"run folder: {result.out_dir} (metrics.jsonl, config.yaml, checkpoints/"
                  + (", reward.png" if result.plot else "") + ")")
