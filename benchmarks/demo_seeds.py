"""The demo recipe (``toolgym demo``) over several seeds: the RL row and the equal-compute SFT control.

Each seed reruns the whole recipe from the shipped base checkpoint with its own SFT batch
order, RL task order and sampling; the held-out tasks are the same for every seed. The table
shows held-out success on the never-demonstrated family at each stage, the RL gain (after RL
minus after SFT) and the RL row's lead over the control (after RL minus SFT control).

    python benchmarks/demo_seeds.py --seeds 0 1 2 3 4 --jobs 2 --threads 1

Writes benchmarks/results/demo_seeds.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from toolgym.trainers.demo import STAGES, DemoConfig, evaluate_base, run_demo

OUT = Path(__file__).parent / "results" / "demo_seeds.json"


def _one_seed(seed: int, threads: int, base_stage: dict, overrides: dict) -> dict:
    cfg = DemoConfig(seed=seed, threads=threads, base_stage=base_stage, **overrides)
    result = run_demo(cfg, log=lambda line: print(f"[seed {seed}] {line}", flush=True))
    return asdict(result)


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Mean, spread and min of each stage's success on the new family, of the RL gain and of RL's lead over the control."""
    out = {stage: _spread([r["stages"][stage]["success"] for r in runs]) for stage in STAGES if stage in runs[0]["stages"]}
    out["rl_gain"] = _spread([r["stages"]["after_rl"]["success"] - r["stages"]["after_sft"]["success"] for r in runs])
    if "sft_control" in runs[0]["stages"]:
        out["control_gain"] = _spread([r["stages"]["sft_control"]["success"] - r["stages"]["after_sft"]["success"] for r in runs])
        out["rl_over_control"] = _spread([r["stages"]["after_rl"]["success"] - r["stages"]["sft_control"]["success"] for r in runs])
    return out


def _table(seeds: list[int], runs: list[dict]) -> Table:
    table = Table(title="toolgym demo: held-out success on the never-demonstrated family (greedy) per seed")
    for col in ("seed", "base", "after SFT", "after RL", "SFT control", "RL gain", "RL - control", "demonstrated after RL", "minutes"):
        table.add_column(col, justify="right")
    for seed, r in zip(seeds, runs, strict=True):
        s = r["stages"]
        control = s.get("sft_control", {}).get("success", float("nan"))
        table.add_row(str(seed), *(f"{s[k]['success']:.1%}" for k in ("base", "after_sft", "after_rl")), f"{control:.1%}",
                      f"{(s['after_rl']['success'] - s['after_sft']['success']) * 100:+.1f}",
                      f"{(s['after_rl']['success'] - control) * 100:+.1f}", f"{s['after_rl']['demo_success']:.1%}",
                      f"{r['seconds']['total'] / 60:.1f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed (1 is faster on a crowded machine)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, each in its own process")
    parser.add_argument("--heldout", type=int, default=None, help="held-out tasks of the new family (default: the demo's 200)")
    args = parser.parse_args()
    console = Console()
    overrides = {} if args.heldout is None else {"heldout_tasks": args.heldout}
    # The base's greedy held-out result is the same for every seed: measure it once.
    base_stage = evaluate_base(DemoConfig(threads=args.threads, **overrides), log=console.print)
    n = len(args.seeds)
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(_one_seed, args.seeds, [args.threads] * n, [base_stage] * n, [overrides] * n))
    else:
        runs = [_one_seed(seed, args.threads, base_stage, overrides) for seed in args.seeds]
    console.print(_table(args.seeds, runs))
    summary = summarize(runs)
    for key, label in (("rl_gain", "RL gain (after RL - after SFT)"), ("rl_over_control", "RL row - SFT control")):
        if key in summary:
            s = summary[key]
            console.print(f"{label}: {s['mean'] * 100:+.1f} pt (std {s['std'] * 100:.1f}, min {s['min'] * 100:+.1f}, "
                          f"max {s['max'] * 100:+.1f}) over {n} seeds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "seeds": args.seeds, "threads": args.threads, "summary": summary, "runs": runs,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
