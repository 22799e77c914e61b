"""The RL system on this machine: in-process vs sync on Ray vs async (staleness 1 and 2), and weight sync.

Part 1 runs the same GRPO recipe on the tiny Kimi-shaped MoE (UnitConv, 4 tasks x 4 siblings,
48 new tokens per turn) four ways, each for ``--iterations`` iterations from the same weights:

* **in-process**: ``GRPOTrainer`` in one process (torch on every core);
* **sync on Ray**: 2 env actors, ``--workers`` HF inference workers (default 1), 1 Ray Train
  learner, generation then update;
* **async s=1 / s=2**: the same roles, generation of later iterations overlapping the update,
  ``max_staleness`` 1 or 2;
* **async s=1 + IS** (``--modes ...,async1_is``): with the truncated importance correction (one
  more forward over the batch per update, for π_prox).
* **routing replay** (``--modes ...,sync_r3,async1_r3``): the inference worker generates in
  bfloat16 (as a serving engine does) and records each sampled token's experts; the float32
  learner replays them. Printed per mode: agreement of the used experts with the records (1.0
  under replay), the training router's own agreement per MoE layer (the mismatch replay
  removes), and the mean log-prob gap to the behaviour policy with and without replay (each
  update measures both). Not part of the timing comparison: bf16 generation costs differ.

Every Ray mode has the same placement (``ROLES``): the inference worker reserves 1 CPU and the
learner 1 CPU, each computing with one torch thread (``system.*_threads`` default to the
reserved CPUs), env actors and the driver reserve none. Sync leaves the learner's core idle
during generation and the worker's during the update; async overlaps them. Every mode trains
with the same loss settings, so the ratios measure scheduling alone. The sampled episodes
differ between modes after the first update (stale weights sample other turns), so wall time
per iteration also moves with episode lengths: compare trained tokens/s too.

Per mode (iterations after the first, which fills the pipeline): wall time per iteration,
generation/update overlap (seconds of update during which rollouts ran / update seconds),
learner idle fraction, the staleness histogram of trained tokens, trained tokens per second,
weight-sync seconds, and the CPU seconds per iteration of every process of the run (driver,
inference worker, learner, env actors, Ray's own), whose sum over the wall time is the cores
the run actually got ("cores used"). With ``--repeats N`` the modes alternate N times, so a
change in the machine's load reaches all of them; the async/sync ratio is of the means.

Part 2 times the weight sync itself against the parameter count: a ``state_dict`` of N float32
parameters is put in Ray's object store once and copied into the tensors of 2 worker actors
(what ``WeightSync.publish`` and ``load_state_dict`` do), for N from 1M to 64M.

    python benchmarks/train_system.py                     # table + benchmarks/results/train_system.json
    python benchmarks/train_system.py --iterations 6 --modes inprocess,async1

A GPU part (bf16, the ~0.5B config, vLLM) is not written yet: this machine has no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RECIPE: dict[str, Any] = {
    "model": {"tiny": "kimi", "seed": 0}, "env": {"id": "toolgym/unitconv-v0"},
    "algorithm": {"group_size": 4, "filter_zero_variance": False, "clip_high": 0.28},
    "optim": {"lr": 1e-4, "minibatch_size": 8, "micro_batch_size": 4},
    "rollout": {"tasks_per_iteration": 4, "max_new_tokens": 48, "token_budget": 160, "temperature": 1.0},
    "run": {"seed": 0, "torch_threads": 1},
}
# One placement for every Ray mode: the inference worker owns one core, the learner the other (one torch
# thread each, from their CPUs); env actors and the driver reserve none (they mostly wait).
ROLES = {"pool": "ray", "env_actors": 2, "env_actor_cpus": 0.0, "learners": 1, "learner_backend": "ray_train",
         "inference_cpus": 1.0, "learner_cpus": 1.0}
MODES: dict[str, dict[str, Any]] = {
    "inprocess": {"system": {}, "threads": 2},
    "sync": {"system": {"mode": "sync", **ROLES}},
    "async1": {"system": {"mode": "async", "max_staleness": 1, **ROLES}},
    "async2": {"system": {"mode": "async", "max_staleness": 2, **ROLES}},
    "async1_is": {"system": {"mode": "async", "max_staleness": 1, **ROLES}, "importance": "truncated"},
    "sync_r3": {"system": {"mode": "sync", "inference_dtype": "bfloat16", **ROLES}, "routing_replay": True},
    "async1_r3": {"system": {"mode": "async", "max_staleness": 1, "inference_dtype": "bfloat16", **ROLES},
                  "routing_replay": True},
}
DEFAULT_MODES = "inprocess,sync,async1,async2"


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by this process and every process Ray started, grouped by role."""
    import psutil

    me = psutil.Process()
    out: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            name = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:  # a process that ended in between
            continue
        role = next((r for key, r in PROCESS_ROLES if key in name), "ray other") if proc.pid != me.pid else "driver"
        out[role] = out.get(role, 0.0) + times.user + times.system
    return out


PROCESS_ROLES = [("InferenceWorker", "inference worker"), ("RayTrainWorker", "learner"), ("EnvActor", "env actors"),
                 ("TrainController", "ray train controller"), ("Mailbox", "learner mailbox"), ("raylet", "raylet"),
                 ("gcs_server", "gcs"), ("dashboard", "ray other"), ("ray::IDLE", "ray idle workers")]
"""Substrings of a process's command line -> the role its CPU time is counted under."""


def run_mode(name: str, iterations: int, workers: int) -> dict[str, Any]:
    """Train ``iterations`` iterations in mode ``name``; per-iteration wall times, metric rows and CPU by role."""
    import torch

    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import build_trainer, load_policy

    spec = MODES[name]
    data = json.loads(json.dumps(RECIPE))
    data["run"].update(iterations=iterations, torch_threads=spec.get("threads", 1))
    data["algorithm"]["importance"] = spec.get("importance", "none")
    data["algorithm"]["routing_replay"] = spec.get("routing_replay", False)
    data["system"] = {**spec["system"], "inference_workers": workers} if spec["system"] else {}
    cfg = TrainConfig.from_dict(data)
    torch.set_num_threads(cfg.run.torch_threads or 1)
    model, tokenizer = load_policy(cfg)
    t0 = time.perf_counter()
    trainer = build_trainer(cfg, model, tokenizer)
    startup = time.perf_counter() - t0
    rows, walls, cpu = [], [], {}
    try:
        for i in range(iterations):
            if i == 1:  # the steady state: after the first iteration, which fills the pipeline
                cpu = cpu_by_role()
            t = time.perf_counter()
            rows.append(trainer.iteration())
            walls.append(time.perf_counter() - t)
        after = cpu_by_role()
        cpu = {role: (after[role] - cpu.get(role, 0.0)) / max(1, iterations - 1) for role in after}
    finally:
        trainer.close()
    return {"startup_s": startup, "walls": walls, "rows": rows, "cpu_s_per_iteration": cpu}


def wall_stats(walls_per_run: list[list[float]]) -> dict[str, float]:
    """Seconds per iteration in the steady state, and whole runs.

    The first iteration fills an async pipeline (its rollouts wait for nothing to overlap) and
    the last drains it (no later rollout competes with its update), so the steady state leaves
    both out; ``run_s`` is the whole run, fill and drain included.
    """
    steady = [w for walls in walls_per_run for w in (walls[1:-1] if len(walls) > 2 else walls[1:] or walls)]
    return {"iteration_s_steady": statistics.mean(steady), "iteration_s_steady_median": statistics.median(steady),
            "run_s": statistics.mean(sum(walls) for walls in walls_per_run)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the iterations after the first of each run (several runs: the repeats of one mode)."""
    rows = [r for run in runs for r in run["rows"][1:]]
    walls = [w for run in runs for w in run["walls"][1:]]
    update = sum(r.get("time/update_s", 0.0) for r in rows)
    wall = sum(walls)
    hist: dict[str, float] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith("system/staleness/"):
                hist[k.removeprefix("system/staleness/")] = hist.get(k.removeprefix("system/staleness/"), 0.0) + v / len(rows)
    cpu: dict[str, float] = {}
    for run in runs:
        for role, seconds in run["cpu_s_per_iteration"].items():
            cpu[role] = cpu.get(role, 0.0) + seconds / len(runs)

    def mean(key: str) -> float:
        return statistics.mean(r.get(key, 0.0) for r in rows)

    return {
        "startup_s": statistics.mean(run["startup_s"] for run in runs), "iteration_s": statistics.mean(walls),
        "iteration_s_median": statistics.median(walls), "iteration_s_all": [run["walls"] for run in runs],
        "update_s": update / len(rows), "rollout_s": mean("time/rollout_s"), "wait_rollout_s": mean("time/wait_rollout_s"),
        "scoring_s": mean("time/scoring_s"),
        "overlap_frac": sum(r.get("system/overlap_s", 0.0) for r in rows) / update if update else 0.0,
        "learner_idle_frac": 1.0 - update / wall if wall else 0.0,
        "staleness": hist or {"0": 1.0}, "trained_tokens_per_s": sum(r.get("train/tokens", 0.0) for r in rows) / wall,
        "weight_sync_s": mean("system/weight_sync_s"), "reward_mean": mean("train/reward_mean"),
        "routing": {k.removeprefix("routing/"): statistics.mean(r[k] for r in rows if k in r)
                    for k in sorted({k for r in rows for k in r if k.startswith("routing/")})},
        "cpu_s_per_iteration": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        # Cores this run's processes actually got: about 1.0 means the roles took turns on one core's worth of
        # CPU (a loaded machine's fair share), and overlapping them (async) cannot shorten an iteration.
        "cores_used": sum(cpu.values()) / statistics.mean(walls), **wall_stats([run["walls"] for run in runs]),
    }


def speedups(sync: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """Sync's seconds over another mode's: per iteration after the first, in the steady state (mean, median), per run."""
    return {"speedup_vs_sync": sync["iteration_s"] / other["iteration_s"],
            "speedup_vs_sync_steady": sync["iteration_s_steady"] / other["iteration_s_steady"],
            "speedup_vs_sync_steady_median": sync["iteration_s_steady_median"] / other["iteration_s_steady_median"],
            "speedup_vs_sync_run": sync["run_s"] / other["run_s"]}


def weight_sync_scaling(sizes: list[int], repeats: int = 3) -> list[dict[str, float]]:
    """Seconds to put a state_dict of N float32 parameters in the object store and copy it into 2 actors."""
    import ray
    import torch

    @ray.remote(num_cpus=0)
    class Holder:
        def __init__(self, n: int):
            self.t = {f"w{i}": torch.zeros(n // 8) for i in range(8)}

        def load(self, state: dict[str, Any]) -> int:
            for k, v in state.items():
                self.t[k].copy_(v)
            return len(state)

    out = []
    for n in sizes:
        holders = [Holder.remote(n) for _ in range(2)]
        ray.get([h.load.remote({f"w{i}": torch.zeros(n // 8) for i in range(8)}) for h in holders])  # warm
        times = []
        for _ in range(repeats):
            state = {f"w{i}": torch.randn(n // 8) for i in range(8)}
            t0 = time.perf_counter()
            ref = ray.put(state)
            ray.get([h.load.remote(ref) for h in holders])
            times.append(time.perf_counter() - t0)
        out.append({"parameters": n, "seconds": min(times), "mb": n * 4 / 2**20})
        for h in holders:
            ray.kill(h)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--workers", type=int, default=1, help="inference workers of the Ray modes")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every mode, alternating between the modes")
    parser.add_argument("--sizes", default="1000000,4000000,16000000,64000000")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_system.json")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    console = Console()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "load_avg_at_start": os.getloadavg()[0]},
                               "command": f"python benchmarks/train_system.py --iterations {args.iterations} --modes {args.modes} "
                                          f"--workers {args.workers} --repeats {args.repeats}", "placement": ROLES, "modes": {}}
    runs: dict[str, list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):  # modes alternate, so a change in the machine's load hits each of them
        for name in args.modes.split(","):
            console.print(f"[bold]{name}[/] (repeat {repeat + 1}/{args.repeats}, load {os.getloadavg()[0]:.1f}) ...")
            runs.setdefault(name, []).append(run_mode(name, args.iterations, args.workers))
    results["modes"] = {name: summarize(r) for name, r in runs.items()}
    modes = results["modes"]
    if "sync" in modes:
        for name in ("async1", "async2", "async1_is"):
            if name in modes:
                modes[name].update(speedups(modes["sync"], modes[name]))
    results["weight_sync"] = weight_sync_scaling([int(s) for s in args.sizes.split(",")])
    results["machine"]["load_avg_at_end"] = os.getloadavg()[0]
    table = Table(title=f"RL system, tiny Kimi MoE, {args.iterations} iterations (means after the first)")
    for col in ("mode", "s/iter", "vs sync", "steady s/iter", "vs sync", "overlap", "learner idle", "staleness", "tokens/s",
                "sync s", "cores used"):
        table.add_column(col)
    for name, r in modes.items():
        table.add_row(name, f"{r['iteration_s']:.2f}", f"{r['speedup_vs_sync']:.2f}x" if "speedup_vs_sync" in r else "",
                      f"{r['iteration_s_steady']:.2f}", f"{r['speedup_vs_sync_steady']:.2f}x" if "speedup_vs_sync" in r else "",
                      f"{r['overlap_frac']:.0%}", f"{r['learner_idle_frac']:.0%}",
                      " ".join(f"{k}:{v:.2f}" for k, v in sorted(r["staleness"].items())), f"{r['trained_tokens_per_s']:.0f}",
                      f"{r['weight_sync_s']:.3f}", f"{r['cores_used']:.2f}")
    console.print(table)
    roles = sorted({role for r in modes.values() for role in r["cpu_s_per_iteration"]})
    cpu_table = Table(title="CPU seconds per iteration by process (after the first iteration)")
    for col in ("mode", *roles):
        cpu_table.add_column(col)
    for name, r in modes.items():
        cpu_table.add_row(name, *(f"{r['cpu_s_per_iteration'].get(role, 0.0):.2f}" for role in roles))
    console.print(cpu_table)
    routing = {name: r["routing"] for name, r in modes.items() if r["routing"]}
    if routing:  # modes with routing replay: bf16 generation vs the float32 training forward
        layers = sorted({k for r in routing.values() for k in r if k.endswith("/router_agreement") and k.startswith("layer")})
        routing_table = Table(title="routing replay (bf16 generation, fp32 training): agreement with the recorded experts")
        for col in ("mode", "used experts", *(f"router {k.split('/')[0]}" for k in layers), "gap with replay", "gap without"):
            routing_table.add_column(col)
        for name, r in routing.items():
            routing_table.add_row(name, f"{r.get('agreement', 0.0):.4f}", *(f"{r.get(k, 0.0):.4f}" for k in layers),
                                  f"{r.get('logprob_gap_replay', 0.0):.2e}", f"{r.get('logprob_gap_free', 0.0):.2e}")
        console.print(routing_table)
    sync_table = Table(title="weight sync: object store put + copy into 2 actors")
    for col in ("parameters", "MB", "seconds"):
        sync_table.add_column(col)
    for r in results["weight_sync"]:
        sync_table.add_row(f"{r['parameters']:,}", f"{r['mb']:.0f}", f"{r['seconds']:.3f}")
    console.print(sync_table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
