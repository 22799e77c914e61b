"""The demo recipe (``toolgym demo``) over several seeds: held-out success on the never-demonstrated
long tasks before SFT, after SFT, after RL and for the equal-time SFT control.

Each seed reruns the whole recipe from the shipped base checkpoint with its own SFT batch
order, RL task order and sampling; the held-out tasks are the same for every seed. The table
shows each seed, and the mean, spread and minimum of the RL gain (after RL minus after SFT) and
of RL's lead over the control (after RL minus control).

    python benchmarks/demo_seeds.py                 # 3 seeds, defaults of `make demo`
    python benchmarks/demo_seeds.py --seeds 0 1 2 3 # more seeds

Writes benchmarks/results/demo_seeds.json.
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

from toolgym.trainers.demo import DemoConfig, evaluate_base, run_demo

OUT = Path(__file__).parent / "results" / "demo_seeds.json"


def _one_seed(seed: int, threads: int, base_stage: dict) -> dict:
    result = run_demo(DemoConfig(seed=seed, threads=threads, base_stage=base_stage), log=lambda line: print(f"[seed {seed}] {line}", flush=True))
    return asdict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per seed (1 is faster on a crowded machine)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, each in its own process")
    args = parser.parse_args()
    console = Console(width=None if os.isatty(1) else 150)  # a piped log keeps every column
    # The base's greedy held-out result is the same for every seed: measure it once.
    base_stage = evaluate_base(DemoConfig(threads=args.threads), log=console.print)
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(_one_seed, args.seeds, [args.threads] * len(args.seeds), [base_stage] * len(args.seeds)))
    else:
        runs = [_one_seed(seed, args.threads, base_stage) for seed in args.seeds]
    def success(run: dict, stage: str) -> float:
        return run["stages"][stage]["success"]

    gains = [success(r, "after_rl") - success(r, "after_sft") for r in runs]
    leads = [success(r, "after_rl") - success(r, "control") for r in runs]
    table = Table(title="toolgym demo: held-out success on long tasks (greedy) per seed")
    for col in ("seed", "before SFT", "after SFT", "after RL", "control", "RL gain", "RL - control", "short tasks after RL", "minutes"):
        table.add_column(col, justify="right")
    for seed, r, gain, lead in zip(args.seeds, runs, gains, leads, strict=True):
        table.add_row(str(seed), *(f"{success(r, k):.1%}" for k in ("before_sft", "after_sft", "after_rl", "control")),
                      f"{gain:+.1%}", f"{lead:+.1%}", f"{r['stages']['after_rl'].get('shown_success', float('nan')):.1%}",
                      f"{r['seconds']['total'] / 60:.1f}")
    console.print(table)

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values)}

    summary = {"rl_gain": spread(gains), "rl_minus_control": spread(leads),
               "after_sft_mean": statistics.mean(success(r, "after_sft") for r in runs),
               "after_rl_mean": statistics.mean(success(r, "after_rl") for r in runs),
               "control_mean": statistics.mean(success(r, "control") for r in runs)}
    for key, label in (("rl_gain", "RL gain over SFT"), ("rl_minus_control", "RL minus control")):
        g = summary[key]
        console.print(f"{label}: {g['mean']:+.1%} (std {g['std']:.1%}, min {g['min']:+.1%}, max {g['max']:+.1%}) over {len(runs)} seeds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "seeds": args.seeds, "summary": summary, "runs": runs,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
