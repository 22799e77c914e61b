"""Sync vs async RL system on the demo recipe: held-out success after RL from the demo's SFT model, per seed.

The demo (``toolgym demo``, ``toolgym.trainers.demo``) warms the shipped base up with SFT and
then runs GRPO in one process. Here the same SFT model (made once, with the demo's SFT settings on
its "short" tasks, seed 0) is trained by ``SystemTrainer`` instead, with the demo's RL config, RL
tasks and held-out tasks ("long": values the demonstrations never show) and rubric, once
synchronously and once asynchronously (``max_staleness: 1``) per seed.
The question (issue 17): is the held-out gain over SFT of async within the spread of sync?

Placement: one HF inference worker (1 CPU, 1 torch thread), one Ray Train learner (1 CPU, 1
thread), envs in the driver's process (the demo's API env is cheap). The held-out evaluation
is greedy on the inference worker; after SFT it is the same for every seed and mode, so it is
measured once.

    python benchmarks/system_heldout.py                                # 3 seeds, the demo's RL length
    python benchmarks/system_heldout.py --seeds 0 1 2 --iterations 10 --heldout 100

Writes benchmarks/results/system_heldout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OUT = Path(__file__).parent / "results" / "system_heldout.json"
PLACEMENT = {"pool": "local", "inference_workers": 1, "inference_cpus": 1.0, "learners": 1, "learner_cpus": 1.0,
             "learner_backend": "ray_train"}
SFT_KIND, RL_KIND = "short", "long"
"""The demo's kinds: SFT demonstrates short values, RL and the held-out test take long ones."""
MODES: dict[str, dict[str, Any]] = {"sync": {"mode": "sync"}, "async1": {"mode": "async", "max_staleness": 1},
         "async1_is": {"mode": "async", "max_staleness": 1}}
ALGORITHM: dict[str, dict[str, Any]] = {"async1_is": {"importance": "truncated"}}
"""Loss options per mode beyond the demo's: ``async1_is`` adds truncated importance sampling for stale tokens."""


def demo_tasks(split: str, n: int, kind: str) -> list[Any]:
    """The demo's tasks of ``split``; of ``kind`` (``SFT_KIND`` for SFT, ``RL_KIND`` for RL and held-out) when the
    demo's task module has kinds, else its one kind (RL then takes training tasks after SFT's, as the demo does)."""
    import inspect

    from toolgym.trainers.demo_tasks import demo_split

    if "kind" in inspect.signature(demo_split).parameters:
        return list(demo_split(split, n, kind))  # type: ignore[call-arg]
    return list(demo_split(split, n))  # type: ignore[call-arg]


def has_kinds() -> bool:
    import inspect

    from toolgym.trainers.demo_tasks import demo_split

    return "kind" in inspect.signature(demo_split).parameters


def make_sft_model(cfg: Any, out: Path, log: Any) -> dict[str, Any]:
    """The demo's SFT stage (base -> SFT on gold episodes of its demonstrated tasks), saved to ``out``."""
    import torch

    from toolgym.envs.formats import get_format
    from toolgym.policies.models.gold_episodes import replay_gold
    from toolgym.trainers.demo import load_base
    from toolgym.trainers.demo_tasks import demo_env
    from toolgym.trainers.sft import SFTConfig, conversation_row, train_rows

    torch.set_num_threads(cfg.threads)
    model, tokenizer = load_base(cfg.base)
    env, fmt = demo_env()(), get_format("kimi_k2")
    tasks = demo_tasks("train", cfg.sft_tasks, SFT_KIND)
    rows = [conversation_row(tokenizer, c.messages, c.tools) for c in (replay_gold(env, t, fmt) for t in tasks)]
    t0 = time.perf_counter()
    done = train_rows(model, rows, SFTConfig(**{**asdict(cfg.sft), "seed": cfg.seed}), pad_id=tokenizer.pad_token_id,
                      log=lambda step, loss: log(f"  sft step {step}: loss {loss:.3f}") if step % 25 == 0 else None)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    torch.set_num_threads(1)
    return {"rows": len(rows), "steps": done.steps, "final_loss": done.final_loss, "seconds": time.perf_counter() - t0}


def rl_config(demo: Any, mode: str) -> Any:
    """The demo's GRPO settings (``toolgym.trainers.demo``), with the roles placed on Ray in ``mode``."""
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.demo_tasks import DEMO_ENV

    return TrainConfig.from_dict({
        "env": {"id": DEMO_ENV, "heldout_tasks": 0, "success_threshold": 1.0},
        "algorithm": {"name": "grpo", "loss": "grpo", "group_size": demo.group_size, **ALGORITHM.get(mode, {})},
        "optim": {"kind": "adamw", "lr": demo.rl_lr, "lr_warmup_iterations": getattr(demo, "rl_warmup_iterations", 0),
                  "minibatch_size": demo.rl_minibatch, "micro_batch_size": demo.rl_minibatch},
        "rollout": {"tasks_per_iteration": demo.rl_tasks_per_iteration, "max_new_tokens": demo.max_new_tokens,
                    "temperature": demo.temperature},
        "run": {"iterations": demo.rl_iterations, "seed": demo.seed, "tensorboard": False, "plots": False, "torch_threads": 1},
        "system": {**PLACEMENT, **MODES[mode]},
    }, source="system_heldout")


def rl_run(mode: str, seed: int, sft_dir: Path, demo: Any, iterations: int, heldout_n: int, evaluate_first: bool,
           log: Any) -> dict[str, Any]:
    """GRPO with the demo's RL settings on ``SystemTrainer`` from the SFT model; held-out success after it."""
    from toolgym.policies.hf_model import load_model_and_tokenizer
    from toolgym.trainers import metrics as m
    from toolgym.trainers.demo_tasks import demo_env, demo_rubric
    from toolgym.trainers.system.driver import SystemTrainer

    demo = replace(demo, seed=seed, rl_iterations=iterations)
    heldout = demo_tasks("heldout", heldout_n, RL_KIND)  # with kinds: the kind no demonstration showed
    n_rl = iterations * demo.rl_tasks_per_iteration
    rl_tasks = demo_tasks("train", n_rl, RL_KIND) if has_kinds() else demo_tasks("train", demo.sft_tasks + n_rl, "")[demo.sft_tasks :]
    cfg = rl_config(demo, mode)
    model, tokenizer = load_model_and_tokenizer(str(sft_dir))
    trainer = SystemTrainer(cfg, model, tokenizer, env=demo_env(), rubric=demo_rubric(),
                            tasks=lambda first, n: [rl_tasks[(first + k) % len(rl_tasks)] for k in range(n)])
    out: dict[str, Any] = {"mode": mode, "seed": seed, "walls": [], "rewards": []}
    try:
        if evaluate_first:
            row = trainer.evaluate(heldout)
            out["after_sft"], out["after_sft_score"] = row[m.HELDOUT_SUCCESS], row[m.HELDOUT_SCORE]
            log(f"  after SFT: held-out success {out['after_sft']:.1%}, mean score {out['after_sft_score']:.3f}")
        t0 = time.perf_counter()
        for _ in range(iterations):
            t = time.perf_counter()
            row = trainer.iteration()
            out["walls"].append(time.perf_counter() - t)
            out["rewards"].append(row.get(m.REWARD_MEAN, float("nan")))
            log(f"  {mode} seed {seed}: iteration {len(out['walls'])}: reward {out['rewards'][-1]:.3f}, {out['walls'][-1]:.1f}s")
        out["rl_s"] = time.perf_counter() - t0
        row = trainer.evaluate(heldout)
        out["after_rl"], out["after_rl_score"] = row[m.HELDOUT_SUCCESS], row[m.HELDOUT_SCORE]
        log(f"  {mode} seed {seed}: after RL: held-out success {out['after_rl']:.1%}, mean score {out['after_rl_score']:.3f}")
    finally:
        trainer.close()
    return out


def summary(runs: list[dict[str, Any]], after_sft: dict[str, float]) -> dict[str, Any]:
    """Per mode: gains over SFT in held-out success and mean rubric score (mean, std, min, max), seconds per iteration."""
    out: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        if not mine:
            continue
        walls = [w for r in mine for w in r["walls"][1:]]
        out[mode] = {"iteration_s": statistics.mean(walls) if walls else float("nan")}
        for metric, key in (("success", "after_rl"), ("score", "after_rl_score")):
            gains = [r[key] - after_sft[metric] for r in mine]
            out[mode][metric] = {"gains": gains, "mean": statistics.mean(gains), "min": min(gains), "max": max(gains),
                                 "std": statistics.stdev(gains) if len(gains) > 1 else 0.0}
    for mode in (m for m in ("async1", "async1_is") if m in out and "sync" in out):
        a, s = out[mode], out["sync"]
        tag = "async" if mode == "async1" else mode
        for metric in ("success", "score"):  # the acceptance question: async's mean gain inside sync's seed spread?
            out[f"{tag}_mean_{metric}_gain_within_sync_spread"] = s[metric]["min"] <= a[metric]["mean"] <= s[metric]["max"]
        out[f"{tag}_vs_sync_iteration_speed"] = s["iteration_s"] / a["iteration_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=None, help="RL iterations per run (default: the demo's)")
    parser.add_argument("--heldout", type=int, default=None, help="held-out tasks (default: the demo's)")
    parser.add_argument("--tasks-per-iteration", type=int, default=None, help="RL tasks per iteration (default: the demo's)")
    parser.add_argument("--sft-tasks", type=int, default=None, help="SFT tasks (default: the demo's; fewer for a smoke run)")
    parser.add_argument("--sft-threads", type=int, default=1,
                        help="torch threads of the SFT stage (its float sums, so the SFT model, depend on it; 1 as demo_seeds runs)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["sync", "async1"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--sft-dir", type=Path, default=None,
                        help="keep the SFT model here and reuse it if it is already there (same --sft-tasks)")
    args = parser.parse_args()
    import ray
    import torch

    from toolgym.trainers.demo import DemoConfig

    torch.set_num_threads(1)
    demo = DemoConfig(threads=args.sft_threads)
    if args.sft_tasks:
        demo = replace(demo, sft_tasks=args.sft_tasks)
    if args.tasks_per_iteration:
        demo = replace(demo, rl_tasks_per_iteration=args.tasks_per_iteration)
    iterations, heldout_n = args.iterations or demo.rl_iterations, args.heldout or demo.heldout_tasks
    console = Console()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="toolgym-sft-") as folder:
        sft_dir = args.sft_dir or Path(folder) / "sft"
        if (sft_dir / "config.json").is_file():  # an SFT model an earlier run of this script saved there
            sft: dict[str, Any] = json.loads((sft_dir / "sft.json").read_text())
        else:
            sft = make_sft_model(demo, sft_dir, console.print)
            (sft_dir / "sft.json").write_text(json.dumps({**sft, "demo": asdict(demo)}))
        runs = []
        for seed in args.seeds:
            for mode in args.modes:
                console.print(f"[bold]{mode}[/] seed {seed} (load {os.getloadavg()[0]:.1f})")
                runs.append(rl_run(mode, seed, sft_dir, demo, iterations, heldout_n, evaluate_first=not runs, log=console.print))
    after_sft = {"success": runs[0]["after_sft"], "score": runs[0]["after_sft_score"]}
    result = {"command": f"python benchmarks/system_heldout.py --seeds {' '.join(map(str, args.seeds))} --modes {' '.join(args.modes)} "
                         f"--iterations {iterations} --heldout {heldout_n} --tasks-per-iteration {demo.rl_tasks_per_iteration} "
                         f"--sft-tasks {demo.sft_tasks}",
              "demo": asdict(demo), "placement": PLACEMENT, "sft": sft, "after_sft": after_sft, "runs": runs,
              "summary": summary(runs, after_sft), "minutes": (time.perf_counter() - clock) / 60,
              "load_avg_at_end": os.getloadavg()[0]}
    table = Table(title=f"held-out success (greedy, {heldout_n} tasks) after {iterations} RL iterations from the demo's SFT model")
    for col in ("seed", "mode", "success after SFT", "after RL", "gain", "score after SFT", "after RL", "gain", "s/iter"):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(str(r["seed"]), r["mode"], f"{after_sft['success']:.1%}", f"{r['after_rl']:.1%}",
                      f"{r['after_rl'] - after_sft['success']:+.1%}", f"{after_sft['score']:.3f}", f"{r['after_rl_score']:.3f}",
                      f"{r['after_rl_score'] - after_sft['score']:+.3f}", f"{statistics.mean(r['walls'][1:] or r['walls']):.1f}")
    console.print(table)
    console.print(json.dumps(result["summary"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out} ({result['minutes']:.0f} min)")


if __name__ == "__main__":
    main()
