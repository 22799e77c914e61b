"""The data engine at acceptance scale, offline: time and peak memory per stage.

Runs ``toolgym synth`` (``run_synth``) with the deterministic fallback everywhere: 10,000 tools
evolved from the clinic OpenAPI document and the shipped retail and banking domains over a
generated 60-domain taxonomy, 1,000 agents, 10,000 tasks (each gold-replayed in its agent's
env), and ``--trajectories`` judged episodes, into a fresh folder. A second run on the same
folder measures the resume path (every stage read back from its cache).

Time is wall time of each stage and CPU time of this process during it (on a shared machine
wall time also counts other jobs' turns on the cores); memory is the process's resident set,
sampled every 50 ms by a thread and attributed to the stage running at the time (the peak is
cumulative: Python rarely returns memory to the OS, so a stage's peak includes what earlier
stages still hold).

    python benchmarks/synth_scale.py                                  # 10,000 / 1,000 / 10,000
    python benchmarks/synth_scale.py --tools 1000 --agents 100 --tasks 1000 --trajectories 100   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from toolgym.rubrics.synth.config import SynthConfig
from toolgym.rubrics.synth.pipeline import run_synth

ROOT = Path(__file__).parents[1]


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Peak RSS per stage, the stage being the last one ``advance`` named."""

    def __init__(self) -> None:
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        """CPU seconds of this process per stage (wall time also counts other jobs on a shared machine)."""
        self._since = time.process_time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def advance(self, stage: str, done: int, total: int | None) -> None:
        now = time.process_time()
        if stage != self.stage:  # CPU time of the stage that just ended
            self.cpu[self.stage] = self.cpu.get(self.stage, 0.0) + now - self._since
            self._since = now
        self.stage = stage
        self._sample()

    def _sample(self) -> None:
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss_mib())

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def config(args: argparse.Namespace, out: Path) -> SynthConfig:
    return SynthConfig.model_validate({
        "name": "scale", "seed": 0, "out": str(out),
        "tools": {"target": args.tools, "openapi": [str(ROOT / "examples/configs/synth_clinic_openapi.yaml")],
                  "envs": ["toolgym/retail-v0", "toolgym/banking-v0"], "shard_size": 500},
        "population": {"agents": args.agents, "tasks": args.tasks, "shard_size": 1000},
        "trajectories": {"count": args.trajectories, "shard_size": 250},
    })


def measure(cfg: SynthConfig) -> dict:
    start_rss = rss_mib()
    with Sampler() as sampler:
        started = time.perf_counter()
        run = run_synth(cfg, advance=sampler.advance)
        wall = time.perf_counter() - started
    sampler.advance("end", 0, None)
    stages = {s.name: {"seconds": s.seconds, "cpu_s": round(sampler.cpu.get(s.name, 0.0), 2), "kept": s.items, "cache_hits": s.cache_hits,
                       "peak_rss_mib": round(sampler.peaks.get(s.name, 0.0), 1)} for s in run.report.stages}
    return {"wall_s": round(wall, 2), "start_rss_mib": round(start_rss, 1), "peak_rss_mib": round(max(sampler.peaks.values()), 1),
            "stages": stages, "counts": run.report.counts, "pass_rate": run.report.pass_rate,
            "dropped": {f"{d.stage}/{d.kind}": d.count for d in run.report.dropped},
            "diversity": run.report.diversity.model_dump()}


def show(console: Console, results: dict) -> None:
    for label in ("fresh", "resumed"):
        r = results[label]
        table = Table(title=f"{label} run: {r['wall_s']:.1f} s wall, peak RSS {r['peak_rss_mib']:.0f} MiB (start {r['start_rss_mib']:.0f})")
        for col in ("stage", "kept", "wall s", "CPU s", "peak RSS MiB", "cache hits"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for name, s in r["stages"].items():
            table.add_row(name, f"{s['kept']:,}", f"{s['seconds']:.1f}", f"{s['cpu_s']:.1f}", f"{s['peak_rss_mib']:.0f}", str(s["cache_hits"]))
        console.print(table)
    fresh = results["fresh"]
    console.print(f"counts {fresh['counts']}; pass rate {fresh['pass_rate']}; dropped {fresh['dropped']}")
    d = fresh["diversity"]
    console.print(f"diversity: {d['distinct_tool_names']:,} names, {d['schema_shapes']:,} shapes, {d['domains_covered']}/{d['domains_total']} domains, "
                  f"distinct-2 {d['distinct_2']}, distinct-3 {d['distinct_3']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--trajectories", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth_scale.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth_scale_") as tmp:
        cfg = config(args, Path(tmp) / "run")
        results = {"fresh": measure(cfg), "resumed": measure(cfg)}
    results["meta"] = {"tools": args.tools, "agents": args.agents, "tasks": args.tasks, "trajectories": args.trajectories,
                       "cpus": os.cpu_count(), "command": "python benchmarks/synth_scale.py"}
    show(Console(), results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
