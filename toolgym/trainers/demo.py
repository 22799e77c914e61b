"""The main job: RL teaches a skill no demonstration showed (``toolgym demo``).

The recipe, at toy scale and in Kimi K2's order:

1. start from the shipped base checkpoint (``toolgym/trainers/checkpoints/tiny-base``), which was
   pretrained on gold episodes of every domain except the UnitConv ``convert_store`` family;
2. SFT on gold trajectories of the two demonstrated families (``demo_tasks.SFT_FAMILIES``:
   ``convert_only`` and ``store_only``, each showing one tool) until they are learned;
3. GRPO on ``convert_store`` tasks (``demo_tasks.RL_FAMILY``), the composition of the two that no
   gold trajectory ever showed, with the partial-credit rubric as the only signal;
4. the control: from the same SFT model, more SFT on fresh demonstrations of the demonstrated
   families for as long (wall time) as the RL stage took;
5. greedy held-out success on the new family (and on the demonstrated ones) for the base, after
   SFT, after RL and for the control.

Held-out success is the share of held-out tasks whose rubric total is 1.0: right calls, right
memory state, right number in the answer. ``docs/main_job.md`` explains why the new family is
reachable by exploration and gives the measured numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolgym.trainers import metrics as m
from toolgym.trainers.sft import SFTConfig

STAGES = ("base", "after_sft", "after_rl", "sft_control")
"""Rows of the demo table, in order."""
Progress = Callable[[str, float, float], None]
"""``progress(stage, done, total)``: where a long stage is (steps, iterations or seconds)."""


@dataclass
class DemoConfig:
    """Every setting of the demo; the defaults are what ``make demo`` runs."""

    seed: int = 0
    """Seeds SFT batch order, RL task order and sampling (the held-out tasks stay the same)."""
    base: str | None = None
    """Model folder to start from (None: the shipped base checkpoint)."""
    sft_tasks: int = 400
    """Gold trajectories per demonstrated family for SFT (the control draws as many fresh ones)."""
    heldout_tasks: int = 200
    """Held-out tasks of the new family (one task is 0.5 point)."""
    heldout_demo_tasks: int = 20
    """Held-out tasks per demonstrated family (a check that they stay learned)."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=2e-3, batch_size=16, epochs=6.0, warmup_steps=10,
                                                             schedule="cosine", log_every=10))
    """300 steps over 800 rows, decaying to 10%: measured at a constant rate, 225 steps already solve
    70% / 95% of held-out ``convert_only`` / ``store_only`` tasks (150 steps: 25% / 85%)."""
    rl_iterations: int = 25
    rl_tasks_per_iteration: int = 8
    group_size: int = 8
    rl_lr: float = 1e-4
    rl_minibatch: int = 16
    temperature: float = 1.0
    max_new_tokens: int = 48
    control_lr: float = 2e-4
    """Learning rate of the control's extra SFT (the end of the SFT schedule)."""
    control: bool = True
    """Run the equal-compute SFT control."""
    threads: int = 2
    base_stage: dict[str, float] | None = None
    """Held-out result of the base, measured earlier with the same base and held-out tasks (greedy,
    so identical for every seed); None measures it. ``benchmarks/demo_seeds.py`` shares one."""


@dataclass
class DemoResult:
    """Held-out success and score at each stage, the RL history and where the time went."""

    config: dict[str, Any]
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    """Stage (``STAGES``) -> ``success``/``score`` on the new family, ``demo_success``/``demo_score`` on the demonstrated ones."""
    sft: dict[str, Any] = field(default_factory=dict)
    control: dict[str, Any] = field(default_factory=dict)
    rl_history: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @property
    def rl_gain(self) -> float:
        """After RL minus after SFT, held-out success on the new family."""
        return self.stages["after_rl"]["success"] - self.stages["after_sft"]["success"]


def _rl_config(cfg: DemoConfig) -> Any:
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.demo_tasks import DEMO_ENV

    return TrainConfig.from_dict({
        "env": {"id": DEMO_ENV, "heldout_tasks": 0, "success_threshold": 1.0},
        "algorithm": {"name": "grpo", "loss": "grpo", "group_size": cfg.group_size},
        "optim": {"kind": "adamw", "lr": cfg.rl_lr, "minibatch_size": cfg.rl_minibatch, "micro_batch_size": cfg.rl_minibatch},
        "rollout": {"tasks_per_iteration": cfg.rl_tasks_per_iteration, "max_new_tokens": cfg.max_new_tokens,
                    "temperature": cfg.temperature},
        "run": {"iterations": cfg.rl_iterations, "seed": cfg.seed, "tensorboard": False, "plots": False},
    }, source="demo")


def load_base(path: str | None) -> tuple[Any, Any]:
    """The base model and tokenizer (the shipped checkpoint unless ``path`` names another)."""
    from toolgym.policies.hf_model import load_model_and_tokenizer
    from toolgym.trainers.pretrain import base_checkpoint

    return load_model_and_tokenizer(path or base_checkpoint())


class _Demo:
    """The models, task sets and trainer of one run (shared by the stages)."""

    def __init__(self, cfg: DemoConfig, log: Callable[[str], None], progress: Progress | None):
        import torch

        from toolgym.trainers.demo_tasks import RL_FAMILY, demo_env, demo_rubric, demo_split, mixed_split
        from toolgym.trainers.grpo import GRPOTrainer

        torch.set_num_threads(cfg.threads)
        self.cfg, self.log, self.progress = cfg, log, progress or (lambda stage, done, total: None)
        self.result = DemoResult(config=asdict(cfg))
        self.model, self.tokenizer = load_base(cfg.base)
        self.heldout = demo_split("heldout", cfg.heldout_tasks, RL_FAMILY)
        self.heldout_demo = mixed_split("heldout", cfg.heldout_demo_tasks)
        demonstrated = mixed_split("train", 2 * cfg.sft_tasks)
        self.sft_tasks, self.control_tasks = demonstrated[: len(demonstrated) // 2], demonstrated[len(demonstrated) // 2 :]
        rl_tasks = demo_split("train", cfg.rl_iterations * cfg.rl_tasks_per_iteration, RL_FAMILY)
        self.trainer = GRPOTrainer(_rl_config(cfg), self.model, self.tokenizer, env=demo_env(), rubric=demo_rubric(),
                                   tasks=lambda first, n: [rl_tasks[(first + k) % len(rl_tasks)] for k in range(n)])
        self.rl_tokens = {"rollout": 0, "update": 0}
        self._count_rl_tokens()

    def _count_rl_tokens(self) -> None:
        """Count the tokens RL pushes through the model: every rollout token (generation is a forward
        pass over it) and every token of the update's rows (forward and backward), per epoch."""
        build, epochs = self.trainer.build_batch, self.trainer.config.optim.epochs

        def counting(collected: Any) -> Any:
            batch, counts = build(collected)
            self.rl_tokens["rollout"] += sum(len(row.input_ids) for group in collected.groups for s in group for row in s.rows)
            if batch is not None:
                self.rl_tokens["update"] += int(batch.attention_mask.sum()) * epochs
            return batch, counts

        self.trainer.build_batch = counting  # type: ignore[method-assign]  # an adapter, not a hook in GRPOTrainer

    def evaluate(self, name: str) -> None:
        t0 = time.perf_counter()
        new, old = self.trainer.evaluate(self.heldout), self.trainer.evaluate(self.heldout_demo) if self.heldout_demo else {}
        spent = time.perf_counter() - t0
        row = {"success": new[m.HELDOUT_SUCCESS], "score": new[m.HELDOUT_SCORE],
               "demo_success": old.get(m.HELDOUT_SUCCESS, float("nan")), "demo_score": old.get(m.HELDOUT_SCORE, float("nan"))}
        self.result.stages[name], self.result.seconds[f"eval_{name}"] = row, spent
        self.log(f"{name}: new family {row['success']:.1%} (score {row['score']:.3f}), "
                 f"demonstrated families {row['demo_success']:.1%} ({spent:.0f}s)")

    def sft_rows(self, tasks: list[Any]) -> list[Any]:
        from toolgym.envs.formats import get_format
        from toolgym.policies.models.gold_episodes import replay_gold
        from toolgym.trainers.demo_tasks import demo_env
        from toolgym.trainers.sft import conversation_row

        env, fmt = demo_env()(), get_format("kimi_k2")
        return [conversation_row(self.tokenizer, c.messages, c.tools) for c in (replay_gold(env, t, fmt) for t in tasks)]

    def train_sft(self, stage: str, rows: list[Any], sft_cfg: SFTConfig) -> dict[str, Any]:
        import math

        from toolgym.trainers.sft import train_rows

        total = math.ceil(len(rows) * sft_cfg.epochs / sft_cfg.batch_size)

        def on_log(step: int, loss: float) -> None:
            self.progress(stage, step, total)
            self.log(f"  {stage} step {step}: loss {loss:.3f}")

        done = train_rows(self.model, rows, sft_cfg, pad_id=self.tokenizer.pad_token_id, log=on_log)
        self.progress(stage, total, total)
        return {"rows": len(rows), "steps": done.steps, "tokens": done.tokens, "trained_tokens": done.trained_tokens,
                "final_loss": done.final_loss, "losses": done.losses, "seconds": done.seconds}

    def rl(self) -> None:
        t0 = time.perf_counter()
        for i in range(self.cfg.rl_iterations):
            row = self.trainer.iteration()
            self.result.rl_history.append(row)
            self.progress("rl", i + 1, self.cfg.rl_iterations)
            self.log(f"  rl iteration {i}: reward {row.get(m.REWARD_MEAN, float('nan')):.3f}, "
                     f"groups with signal {row.get(m.GROUPS, 0) - row.get(m.ZERO_VARIANCE_GROUPS, 0):.0f}/{row.get(m.GROUPS, 0):.0f}")
        self.result.seconds["rl"] = time.perf_counter() - t0


def run_demo(cfg: DemoConfig | None = None, *, log: Callable[[str], None] = print, progress: Progress | None = None) -> DemoResult:
    """Run the recipe (see the module docstring) and return what it measured."""
    cfg = cfg or DemoConfig()
    clock = time.perf_counter()
    demo = _Demo(cfg, log, progress)
    result = demo.result
    try:
        if cfg.base_stage is None:
            demo.evaluate("base")
        else:
            result.stages["base"] = dict(cfg.base_stage)
            log(f"base: new family {cfg.base_stage['success']:.1%} (measured once for every seed)")
        result.sft = demo.train_sft("sft", demo.sft_rows(demo.sft_tasks), SFTConfig(**{**asdict(cfg.sft), "seed": cfg.seed}))
        result.seconds["sft"] = result.sft["seconds"]
        demo.evaluate("after_sft")
        after_sft = {k: v.detach().clone() for k, v in demo.model.state_dict().items()}
        demo.rl()
        demo.evaluate("after_rl")
        if cfg.control:
            demo.model.load_state_dict(after_sft)
            _control(demo)
            demo.evaluate("sft_control")
    finally:
        demo.trainer.close()
    result.seconds["total"] = time.perf_counter() - clock
    return result


def _control(demo: _Demo) -> None:
    """More SFT from the same start as RL, on fresh demonstrations, for as many tokens as RL used.

    RL's compute is its rollout tokens (forward) plus its update tokens (forward and backward); the
    control trains (forward and backward) on at least that many tokens, so it gets more compute.
    """
    import math

    cfg, result = demo.cfg, demo.result
    rows = demo.sft_rows(demo.control_tasks)
    budget = demo.rl_tokens["rollout"] + demo.rl_tokens["update"]
    per_step = cfg.sft.batch_size * min(len(r.ids) for r in rows)  # the shortest rows: never under budget
    steps = max(1, math.ceil(budget / per_step))
    control_cfg = SFTConfig(**{**asdict(cfg.sft), "lr": cfg.control_lr, "epochs": steps * cfg.sft.batch_size / len(rows),
                               "warmup_steps": 0, "schedule": "constant", "seed": cfg.seed + 1})
    result.control = {**demo.train_sft("control", rows, control_cfg), "rl_tokens": dict(demo.rl_tokens), "token_budget": budget}
    result.seconds["control"] = result.control["seconds"]


def evaluate_base(cfg: DemoConfig | None = None, *, log: Callable[[str], None] = print) -> dict[str, float]:
    """Greedy held-out success and score of the base model alone (the demo's first row)."""
    demo = _Demo(cfg or DemoConfig(), log, None)
    try:
        demo.evaluate("base")
    finally:
        demo.trainer.close()
    return {**demo.result.stages["base"], "seconds": demo.result.seconds["eval_base"]}


def save_result(result: DemoResult, path: str | Path) -> Path:
    """Write the result as JSON (creating folders)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_json() + "\n", encoding="utf-8")
    return out


def plot_curve(result: DemoResult, path: str | Path) -> Path:
    """Draw the RL reward per iteration beside held-out success on the new family at every stage."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    rewards = [row.get(m.REWARD_MEAN, float("nan")) for row in result.rl_history]
    left.plot(range(len(rewards)), rewards, marker="o")
    left.set(title="RL on the new family: mean reward", xlabel="iteration", ylabel="rubric reward", ylim=(0, 1))
    names = [s for s in STAGES if s in result.stages]
    right.bar(names, [result.stages[s]["success"] for s in names], color=["grey", "tab:blue", "tab:green", "tab:orange"][: len(names)])
    right.set(title="held-out success on the new family (greedy)", ylabel="success rate", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


_LABELS = {"base": "base", "after_sft": "after SFT", "after_rl": "after RL (GRPO)", "sft_control": "SFT control (equal compute)"}


def main(*, seed: int = 0, out: str | Path | None = None, console: Any = None, threads: int = 2) -> DemoResult:
    """``toolgym demo``: run the recipe with a progress bar, print the table, save JSON and the curve PNG.

    Args:
        out: JSON path (default ``runs/demo/demo.json``); the curve goes beside it as ``.png``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = console or Console()
    console.rule("[bold]toolgym demo: SFT on two UnitConv families, then GRPO on their composition, never demonstrated")
    bars = Progress(TextColumn("{task.description:>8}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=console)
    ids: dict[str, Any] = {}

    def progress(stage: str, done: float, total: float) -> None:
        if stage not in ids:
            ids[stage] = bars.add_task(stage, total=total)
        bars.update(ids[stage], completed=done, total=total)

    with bars:
        result = run_demo(DemoConfig(seed=seed, threads=threads), log=console.print, progress=progress)
    table = Table(title=f"held-out success (greedy): {result.config['heldout_tasks']} tasks of the new family convert_store, "
                        f"{2 * result.config['heldout_demo_tasks']} of the demonstrated families")
    for col in ("stage", "new family: success", "new family: mean score", "demonstrated families: success"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name in STAGES:
        if name in result.stages:
            s = result.stages[name]
            table.add_row(_LABELS[name], f"{s['success']:.1%}", f"{s['score']:.3f}", f"{s['demo_success']:.1%}")
    console.print(table)
    sec = result.seconds
    console.print(f"RL gain on the new family: {result.rl_gain * 100:+.1f} pt; total {sec['total'] / 60:.1f} min "
                  f"(SFT {sec.get('sft', 0):.0f}s, RL {sec.get('rl', 0):.0f}s, control {sec.get('control', 0):.0f}s)")
    path = save_result(result, out if out is not None else Path("runs/demo/demo.json"))
    console.print(f"wrote {path} and {plot_curve(result, path.with_suffix('.png'))}")
    return result
