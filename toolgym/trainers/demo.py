"""The main job: RL teaches a tiny MoE a skill no demonstration showed (``toolgym demo``).

The recipe follows Kimi K2's at toy scale, on UnitConv ``convert_store`` tasks
(``toolgym.trainers.demo_tasks``):

1. start from the shipped base checkpoint (``toolgym/trainers/checkpoints/tiny-base``, trained
   by ``scripts/pretrain_base.py`` on gold episodes of every domain except the demo family);
2. SFT on gold trajectories of "short" tasks only: the value to convert is under 100, so no
   demonstration ever copies a third digit before the point;
3. GRPO (``toolgym.trainers.grpo.GRPOTrainer``) on "long" tasks (values of 100 to 500), scored
   by the partial-credit rubric alone: no gold trajectory of a long task is ever shown;
4. the control: from the same SFT model, more SFT on the demonstrations that exist, for about
   the wall time GRPO took;
5. greedy held-out success on long tasks (the new skill) and on short tasks (what SFT taught),
   before SFT, after SFT, after RL and for the control.

Held-out success is the share of held-out tasks whose rubric total is 1.0: right calls,
right memory state, right number in the answer.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolgym.trainers import metrics as m
from toolgym.trainers.sft import SFTConfig


@dataclass
class DemoConfig:
    """Every setting of the demo; the defaults are what ``make demo`` runs."""

    seed: int = 0
    """Seeds SFT batch order, RL task order and sampling (the held-out tasks stay the same)."""
    base: str | None = None
    """Model folder to start from (None: the shipped base checkpoint)."""
    sft_tasks: int = 640
    heldout_tasks: int = 200
    """Held-out long tasks (the skill RL teaches): one task is 0.5 point."""
    shown_heldout_tasks: int = 100
    """Held-out short tasks (what SFT demonstrated), to show what RL and the control keep."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=2e-3, batch_size=16, epochs=3.75, warmup_steps=10,
                                                             schedule="constant", log_every=25))
    """150 steps of 16 short rows at a constant rate."""
    control_steps: int = 300
    """SFT steps of the control row, from the SFT model: about GRPO's wall time (measured 205 s against 227 s)."""
    rl_iterations: int = 25
    rl_tasks_per_iteration: int = 8
    group_size: int = 8
    rl_lr: float = 1e-4
    rl_minibatch: int = 16
    rl_warmup_iterations: int = 5
    """GRPO's learning rate ramps up over this many iterations. Adam's first steps move every weight by
    about the full rate whatever its gradient; without the ramp they knocked seed 2 off the skill
    (13.0% -> 6.5% after RL, against 62.0% with it)."""
    temperature: float = 1.0
    max_new_tokens: int = 48
    threads: int = 2
    """Torch threads of RL and the evaluations."""
    sft_threads: int = 1
    """Torch threads of the SFT stages (SFT and the control). Float sums differ by thread count, and
    150 steps at lr 2e-3 carry the difference far: at one thread every seed's SFT model keeps three
    leading digits of a long value (9-16% held-out), at two threads seeds 0 and 1 kept two (0.0%),
    and GRPO from there found the skill late (seed 0, iteration 20) or never (seed 1). One thread
    gives every machine the same starting point."""
    base_stage: dict[str, float] | None = None
    """Held-out result of the base, measured earlier with the same base and held-out tasks (greedy,
    so identical for every seed); None measures it. ``benchmarks/demo_seeds.py`` shares one."""


@dataclass
class DemoResult:
    """Held-out success and score at each stage, the RL history and where the time went."""

    config: dict[str, Any]
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    """``before_sft`` / ``after_sft`` / ``after_rl`` / ``control`` -> held-out success and mean score on
    long tasks, and ``shown_success`` on short ones."""
    sft: dict[str, Any] = field(default_factory=dict)
    rl_history: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _rl_config(cfg: DemoConfig, heldout_n: int) -> Any:
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.demo_tasks import DEMO_ENV

    return TrainConfig.from_dict({
        "env": {"id": DEMO_ENV, "heldout_tasks": heldout_n, "success_threshold": 1.0},
        "algorithm": {"name": "grpo", "loss": "grpo", "group_size": cfg.group_size},
        "optim": {"kind": "adamw", "lr": cfg.rl_lr, "lr_warmup_iterations": cfg.rl_warmup_iterations, "minibatch_size": cfg.rl_minibatch, "micro_batch_size": cfg.rl_minibatch},
        "rollout": {"tasks_per_iteration": cfg.rl_tasks_per_iteration, "max_new_tokens": cfg.max_new_tokens,
                    "temperature": cfg.temperature},
        "run": {"iterations": cfg.rl_iterations, "seed": cfg.seed, "tensorboard": False, "plots": False},
    }, source="demo")


def load_base(path: str | None) -> tuple[Any, Any]:
    """The base model and tokenizer (the shipped checkpoint unless ``path`` names another)."""
    from toolgym.policies.hf_model import load_model_and_tokenizer
    from toolgym.trainers.pretrain import base_checkpoint

    return load_model_and_tokenizer(path or base_checkpoint())


def run_demo(cfg: DemoConfig | None = None, *, log: Callable[[str], None] = print) -> DemoResult:
    """Run the recipe (see the module docstring) and return what it measured."""
    import torch

    from toolgym.policies.models.gold_episodes import replay_gold
    from toolgym.trainers.demo_tasks import demo_env, demo_rubric, demo_split
    from toolgym.trainers.grpo import GRPOTrainer
    from toolgym.trainers.sft import conversation_row

    cfg = cfg or DemoConfig()
    torch.set_num_threads(cfg.threads)
    result, clock = DemoResult(config=asdict(cfg)), time.perf_counter()
    model, tokenizer = load_base(cfg.base)
    heldout, shown = demo_split("heldout", cfg.heldout_tasks, "long"), demo_split("heldout", cfg.shown_heldout_tasks, "short")
    sft_tasks = demo_split("train", cfg.sft_tasks, "short")
    rl_tasks = demo_split("train", cfg.rl_iterations * cfg.rl_tasks_per_iteration, "long")
    trainer = GRPOTrainer(_rl_config(cfg, len(heldout)), model, tokenizer, env=demo_env(), rubric=demo_rubric(),
                          tasks=lambda first, n: [rl_tasks[(first + k) % len(rl_tasks)] for k in range(n)], heldout=heldout)
    steps = 2 + cfg.rl_iterations + (1 if cfg.base_stage is None else 0)
    with _progress(steps) as advance:
        try:
            if cfg.base_stage is None:
                _stage(result, "before_sft", trainer, shown, log)
                advance()
            else:
                result.stages["before_sft"] = dict(cfg.base_stage)
                log(f"before_sft: held-out success {cfg.base_stage['success']:.1%} (measured once for every seed)")
            env, fmt = demo_env()(), _kimi()
            rows = [conversation_row(tokenizer, c.messages, c.tools) for c in (replay_gold(env, t, fmt) for t in sft_tasks)]
            result.seconds["sft"], sft = _sft(model, rows, SFTConfig(**{**asdict(cfg.sft), "seed": cfg.seed}), tokenizer, log,
                                              threads=(cfg.sft_threads, cfg.threads))
            result.sft = {"rows": len(rows), "steps": sft.steps, "trained_tokens": sft.trained_tokens, "final_loss": sft.final_loss}
            _stage(result, "after_sft", trainer, shown, log)
            advance()
            after_sft = copy.deepcopy(model.state_dict())
            t0 = time.perf_counter()
            for _ in range(cfg.rl_iterations):
                row = trainer.iteration()
                result.rl_history.append(row)
                log(f"  rl iteration {int(row.get(m.ITERATION, 0))}: reward {row.get(m.REWARD_MEAN, float('nan')):.3f}, "
                    f"groups with signal {row.get(m.GROUPS, 0) - row.get(m.ZERO_VARIANCE_GROUPS, 0):.0f}/{row.get(m.GROUPS, 0):.0f}")
                advance()
            result.seconds["rl"] = time.perf_counter() - t0
            _stage(result, "after_rl", trainer, shown, log)
            model.load_state_dict(after_sft)  # the control starts where RL started
            control = SFTConfig(**{**asdict(cfg.sft), "seed": cfg.seed + 100, "epochs": cfg.control_steps * cfg.sft.batch_size / len(rows)})
            result.seconds["control"], _ = _sft(model, rows, control, tokenizer, log, threads=(cfg.sft_threads, cfg.threads))
            _stage(result, "control", trainer, shown, log)
            advance()
        finally:
            trainer.close()
    result.seconds["total"] = time.perf_counter() - clock
    return result


def evaluate_base(cfg: DemoConfig | None = None, *, log: Callable[[str], None] = print) -> dict[str, float]:
    """Greedy held-out success and score of the base model alone (the demo's first stage)."""
    import torch

    from toolgym.trainers.demo_tasks import demo_env, demo_rubric, demo_split
    from toolgym.trainers.grpo import GRPOTrainer

    cfg = cfg or DemoConfig()
    torch.set_num_threads(cfg.threads)
    model, tokenizer = load_base(cfg.base)
    heldout, shown = demo_split("heldout", cfg.heldout_tasks, "long"), demo_split("heldout", cfg.shown_heldout_tasks, "short")
    trainer = GRPOTrainer(_rl_config(cfg, len(heldout)), model, tokenizer, env=demo_env(), rubric=demo_rubric(), heldout=heldout)
    result = DemoResult(config=asdict(cfg))
    try:
        _stage(result, "before_sft", trainer, shown, log)
    finally:
        trainer.close()
    return {**result.stages["before_sft"], "seconds": result.seconds["eval_before_sft"]}


def _kimi() -> Any:
    from toolgym.envs.formats import get_format

    return get_format("kimi_k2")


def _sft(model: Any, rows: list[Any], cfg: SFTConfig, tokenizer: Any, log: Callable[[str], None],
         threads: tuple[int, int]) -> tuple[float, Any]:
    """SFT at ``threads[0]`` torch threads, then back to ``threads[1]``; returns (seconds, result)."""
    import torch

    from toolgym.trainers.sft import train_rows

    t0 = time.perf_counter()
    torch.set_num_threads(threads[0])
    try:
        done = train_rows(model, rows, cfg, pad_id=tokenizer.pad_token_id, log=lambda s, loss: log(f"  sft step {s}: loss {loss:.3f}"))
    finally:
        torch.set_num_threads(threads[1])
    return time.perf_counter() - t0, done


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar over the demo's stages and RL iterations (rich, to the terminal)."""
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("toolgym demo", total=total)
        yield lambda: bar.advance(task)


def _stage(result: DemoResult, name: str, trainer: Any, shown: Any, log: Callable[[str], None]) -> None:
    t0 = time.perf_counter()
    row, kept = trainer.evaluate(), trainer.evaluate(shown)
    spent = time.perf_counter() - t0
    result.stages[name] = {"success": row.get(m.HELDOUT_SUCCESS, float("nan")), "score": row.get(m.HELDOUT_SCORE, float("nan")),
                           "shown_success": kept.get(m.HELDOUT_SUCCESS, float("nan"))}
    result.seconds[f"eval_{name}"] = spent
    log(f"{name}: held-out success on long tasks {result.stages[name]['success']:.1%} (mean score {result.stages[name]['score']:.3f}), "
        f"on short tasks {result.stages[name]['shown_success']:.1%} ({spent:.0f}s)")


def save_result(result: DemoResult, path: str | Path) -> Path:
    """Write the result as JSON (creating folders)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_json() + "\n", encoding="utf-8")
    return out


STAGE_LABELS = {"before_sft": "base", "after_sft": "after SFT", "after_rl": "after RL", "control": "control (more SFT)"}


def plot_result(result: DemoResult, path: str | Path) -> Path:
    """Draw the demo as a PNG: GRPO's training reward per iteration, and held-out success per stage."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(11, 3.8))
    rewards = [row.get(m.REWARD_MEAN, float("nan")) for row in result.rl_history]
    curve.plot(range(len(rewards)), rewards, marker="o", markersize=3)
    curve.set(title="GRPO on long tasks: mean training reward", xlabel="iteration", ylabel="rubric reward", ylim=(0, 1))
    stages = [s for s in STAGE_LABELS if s in result.stages]
    xs = range(len(stages))
    long = [result.stages[s]["success"] for s in stages]
    short = [result.stages[s].get("shown_success", float("nan")) for s in stages]
    bars.bar([x - 0.2 for x in xs], long, width=0.4, label="long tasks (never demonstrated)")
    bars.bar([x + 0.2 for x in xs], short, width=0.4, label="short tasks (demonstrated)")
    bars.set_xticks(list(xs), [STAGE_LABELS[s] for s in stages])
    bars.set(title="held-out success (greedy)", ylabel="success rate", ylim=(0, 1))
    bars.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(*, seed: int = 0, out: str | Path | None = None, console: Any = None, threads: int = 2,
         plot: str | Path | None = "runs/demo/demo.png") -> DemoResult:
    """``toolgym demo``: run the recipe with its defaults and print the three held-out rates."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.rule("[bold]toolgym demo: SFT on short values, GRPO on long ones (never demonstrated), and an SFT control")
    result = run_demo(DemoConfig(seed=seed, threads=threads), log=console.print)
    cfg = result.config
    table = Table(title=f"held-out success (greedy): {cfg['heldout_tasks']} long tasks never demonstrated, {cfg['shown_heldout_tasks']} short ones")
    for col in ("stage", "long tasks (new skill)", "mean rubric score", "short tasks (demonstrated)"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    rows = (("before_sft", "base (before SFT)"), ("after_sft", "after SFT on short tasks"), ("after_rl", "after RL (GRPO) on long tasks"),
            ("control", f"control: {cfg['control_steps']} more SFT steps instead of RL"))
    for name, label in rows:
        stage = result.stages[name]
        table.add_row(label, f"{stage['success']:.1%}", f"{stage['score']:.3f}", f"{stage.get('shown_success', float('nan')):.1%}")
    console.print(table)
    seconds = result.seconds
    console.print(f"total {seconds['total'] / 60:.1f} min (SFT {seconds.get('sft', 0):.0f}s, RL {seconds.get('rl', 0):.0f}s, "
                  f"control {seconds.get('control', 0):.0f}s)")
    if plot is not None:
        console.print(f"wrote {plot_result(result, plot)} (training reward and held-out success per stage)")
    if out is not None:
        console.print(f"wrote {save_result(result, out)}")
    return result
