"""Rollouts at scale: thousands of live envs on Ray actors versus one in-process core.

(a) ``--envs`` live unitconv envs (10,000 by default), each reset to its own task, replay their
    gold tool calls in lockstep ticks: every live env steps once per tick, through the pool's
    ``step`` exactly as an episode calls it (so the Ray figures include the per-actor tick
    batching and both pickling directions of what ``astep`` returns). Measured for the in-process
    pool (one core, deferred GC as ``run_episodes(gc_policy="deferred")``) and for the Ray
    pool (``--actors`` actors, 1 CPU each) in the same run: aggregate tool-call steps/s, the
    step latency each episode saw (p50/p99), and memory per env (process RSS growth while the
    envs were built, divided by their number). A second Ray row sends pre-built ``step_many``
    batches straight to the actors: what the actors can do when the caller is not the limit.
(b) Engine overhead: ``run_episodes`` with an instant fake policy (a constant tool call, so
    every episode runs its 16-turn budget): turns/s, local vs Ray.
(c) End to end: 1,000 gold unitconv episodes, episodes/s, local vs Ray (actors already up).

    python benchmarks/rollout_scale.py                       # the README numbers
    python benchmarks/rollout_scale.py --envs 1000 --rounds 1  # a quick run
    python benchmarks/rollout_scale.py --against REV         # also run commit REV's benchmark, same settings

With ``--against REV`` the benchmark of commit ``REV`` (its own code and script, extracted with
``git archive``) runs first in a subprocess with the same settings, and the CPU per step of
both trees is printed side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from env_step import extract  # a sibling script: benchmarks/ is on sys.path when run as python benchmarks/X.py
from rich.console import Console
from rich.table import Table

from toolgym.envs.registry import make
from toolgym.rollouts import PolicyTurn, ScriptedPolicy, gold_script, run_episodes, sample_tasks
from toolgym.rollouts.gcpolicy import deferred_gc
from toolgym.rollouts.pool import LocalEnvPool
from toolgym.rollouts.ray_pool import RayEnvPool

UNITCONV = "toolgym/unitconv-v0"
TARGET_RATE, TARGET_RATIO = 50_000, 1.4
INSTANT_TURN = '<tool_call>{"name": "calculate", "arguments": {"expression": "1+1"}}</tool_call>'


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def reset_all(pool: Any, envs: list, tasks: list) -> None:
    await asyncio.gather(*(pool.reset(env, seed=i, options={"task": t}) for i, (env, t) in enumerate(zip(envs, tasks, strict=True))))


async def step_all(pool: Any, envs: list, scripts: list[list[str]]) -> dict[str, Any]:
    """Lockstep ticks: every env with a k-th tool call steps once in tick k; timings per step."""
    latencies: list[float] = []
    step_s, cpu_s, steps = 0.0, 0.0, 0

    async def timed(env: Any, text: str) -> float:
        t0 = time.perf_counter()
        await pool.step(env, text)
        return time.perf_counter() - t0

    for k in range(max(map(len, scripts))):
        live = [(env, s[k]) for env, s in zip(envs, scripts, strict=True) if k < len(s)]
        t0, c0 = time.perf_counter(), time.process_time()
        latencies += await asyncio.gather(*(timed(env, text) for env, text in live))
        step_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        steps += len(live)
    return {"steps": steps, "wall_s": step_s, "caller_cpu_s": cpu_s, "latencies": latencies}


def lockstep(pool: Any, tasks: list, rounds: int, actor_cpu: Any = lambda: 0.0) -> dict[str, float]:
    """Each round resets every env to its task, then replays the gold tool calls (the answer,
    which hashes the world, is left out). ``actor_cpu`` reads the hosts' CPU seconds."""
    scripts = [gold_script(t)[:-1] for t in tasks]
    envs = asyncio.run(_acquire(pool, len(tasks)))
    total: dict[str, Any] = {"steps": 0, "wall_s": 0.0, "caller_cpu_s": 0.0, "latencies": [], "actor_cpu_s": 0.0}
    for _ in range(rounds):
        asyncio.run(reset_all(pool, envs, tasks))
        before = actor_cpu()
        out = asyncio.run(step_all(pool, envs, scripts))
        total["actor_cpu_s"] += actor_cpu() - before
        for key in ("steps", "wall_s", "caller_cpu_s", "latencies"):
            total[key] += out[key]
    asyncio.run(_release(pool, envs))
    lat, steps = total.pop("latencies"), total["steps"]
    cpu = total["caller_cpu_s"] + total["actor_cpu_s"]
    return {**total, "steps_per_s": steps / total["wall_s"], "p50_ms": 1e3 * percentile(lat, 0.5), "p99_ms": 1e3 * percentile(lat, 0.99),
            "cpu_us_per_step": 1e6 * cpu / steps, "caller_cpu_us_per_step": 1e6 * total["caller_cpu_s"] / steps,
            "actor_cpu_us_per_step": 1e6 * total["actor_cpu_s"] / steps}


async def _acquire(pool: Any, n: int) -> list[Any]:
    return [await pool.acquire() for _ in range(n)]


async def _release(pool: Any, envs: list) -> None:
    await asyncio.gather(*(pool.close(env) for env in envs))  # concurrent, so batched per actor


def part_a_local(tasks: list, rounds: int) -> dict[str, float]:
    pool = LocalEnvPool()
    pool.bind(UNITCONV, lambda: make(UNITCONV))
    before = rss_bytes()
    with deferred_gc():
        asyncio.run(_warm(pool, tasks))  # build and reset all envs first: the RSS growth is theirs
        grown = rss_bytes() - before
        out = lockstep(pool, tasks, rounds)
    return {**out, "bytes_per_env": grown / len(tasks)}


async def _warm(pool: Any, tasks: list) -> None:
    envs = await _acquire(pool, len(tasks))
    await reset_all(pool, envs, tasks)
    await _release(pool, envs)


def part_a_ray(pool: RayEnvPool, tasks: list, rounds: int) -> dict[str, float]:
    before = sum(s["rss"] for s in pool.actor_stats())
    asyncio.run(_warm(pool, tasks))
    grown = sum(s["rss"] for s in pool.actor_stats()) - before
    with deferred_gc():  # the caller holds 10,000 handles and coroutines: same GC policy as local
        out = lockstep(pool, tasks, rounds, actor_cpu=lambda: sum(s["cpu_s"] for s in pool.actor_stats()))
    return {**out, "bytes_per_env": grown / len(tasks)}


def part_a_raw(pool: RayEnvPool, tasks: list, rounds: int) -> dict[str, float]:
    """Pre-built ``step_many`` batches straight to the actors (no per-episode caller work)."""
    actors = pool.actor_handles
    scripts = [gold_script(t)[:-1] for t in tasks]
    keys = list(range(10**9, 10**9 + len(tasks)))  # fresh keys: these envs live beside the pool's
    shards = [list(range(a, len(tasks), len(actors))) for a in range(len(actors))]
    ray.get([actor.reset_many.remote([(keys[i], i, {"task": tasks[i]}) for i in shard]) for actor, shard in zip(actors, shards, strict=True)])
    steps, step_s = 0, 0.0
    for _ in range(rounds):
        ray.get([actor.reset_many.remote([(keys[i], i, {"task": tasks[i]}) for i in shard]) for actor, shard in zip(actors, shards, strict=True)])
        for k in range(max(map(len, scripts))):
            batches = [[(keys[i], scripts[i][k]) for i in shard if k < len(scripts[i])] for shard in shards]
            t0 = time.perf_counter()
            size = pool.cfg.max_batch  # the pool's batch size: replies stay inline
            ray.get([actor.step_many.remote(b[j : j + size]) for actor, b in zip(actors, batches, strict=True) for j in range(0, len(b), size)])
            step_s += time.perf_counter() - t0
            steps += sum(map(len, batches))
    ray.get([actor.close_many.remote([(keys[i], False) for i in shard]) for actor, shard in zip(actors, shards, strict=True)])
    return {"steps": steps, "steps_per_s": steps / step_s}


class InstantPolicy:
    """Answers every request at once with the same tool call: the engine's own cost per turn."""

    async def generate(self, requests: list) -> list[PolicyTurn]:
        return [PolicyTurn(text=INSTANT_TURN) for _ in requests]


def timed_rollout(pool: Any, policy: Any, n: int, **kwargs: Any) -> tuple[float, list]:
    started = time.perf_counter()
    eps = run_episodes(UNITCONV, policy, n=n, pool=pool, gc_policy="deferred", **kwargs)
    return time.perf_counter() - started, eps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rollout_scale.json")
    parser.add_argument("--against", metavar="REV", help="first run commit REV's benchmark with the same settings; compare CPU per step")
    args = parser.parse_args()
    console = Console()
    before = run_against(args) if args.against else None
    ray.init(num_cpus=max(os.cpu_count() or 1, args.actors), include_dashboard=False, log_to_driver=False)
    tasks = sample_tasks(UNITCONV, n=args.envs, seed=0)
    gc.collect()
    local_a = part_a_local(tasks, args.rounds)
    with RayEnvPool(actors=args.actors, num_cpus=1) as pool:
        pool.bind(UNITCONV, lambda: make(UNITCONV))
        ray_a = part_a_ray(pool, tasks, args.rounds)
        raw_a = part_a_raw(pool, tasks, args.rounds)
        results = {"a_local": local_a, "a_ray": ray_a, "a_ray_actors_only": raw_a}
        for name, policy, n, kw in (("b", InstantPolicy, 200, {}), ("c", None, args.episodes, {})):
            rows = {}
            for label, p in (("local", None), ("ray", pool)):
                agent = policy() if policy else ScriptedPolicy.gold(sample_tasks(UNITCONV, n=n))
                wall, eps = timed_rollout(p, agent, n, **kw)
                turns = sum(len(e.turns) for e in eps)
                rows[label] = {"wall_s": wall, "episodes": len(eps), "turns": turns, "turns_per_s": turns / wall,
                               "episodes_per_s": len(eps) / wall, "failed": sum(e.failure is not None for e in eps)}
            results[f"{name}_local"], results[f"{name}_ray"] = rows["local"], rows["ray"]
    ratio = ray_a["steps_per_s"] / local_a["steps_per_s"]
    results["meta"] = {"envs": args.envs, "actors": args.actors, "rounds": args.rounds, "cpus": os.cpu_count(),
                       "python": platform.python_version(), "ray": ray.__version__, "ray_over_local": ratio,
                       "target_steps_per_s": TARGET_RATE, "target_ratio": TARGET_RATIO,
                       "targets_met": ray_a["steps_per_s"] >= TARGET_RATE and ratio >= TARGET_RATIO}
    show(console, results)
    if before is not None:
        results["against"] = before
        show_against(console, args.against, before, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.out}")


ROOT = Path(__file__).resolve().parent.parent


def run_against(args: argparse.Namespace) -> dict[str, Any]:
    """Commit ``args.against``'s own benchmark, same settings, in a subprocess; its results."""
    with tempfile.TemporaryDirectory(prefix="rollout_scale_base_") as tmp:
        rev = extract(args.against, Path(tmp))
        out = Path(tmp) / "before.json"
        cmd = [sys.executable, "benchmarks/rollout_scale.py", "--envs", str(args.envs), "--actors", str(args.actors),
               "--rounds", str(args.rounds), "--episodes", str(args.episodes), "--out", str(out)]
        subprocess.run(cmd, cwd=tmp, env={**os.environ, "PYTHONPATH": tmp}, check=True)
        return {**json.loads(out.read_text()), "rev": rev}


def show_against(console: Console, rev: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    table = Table(title=f"CPU µs per tool-call step: {rev} ({before['rev'][:10]}) vs this tree")
    for col in ("", rev, "this tree"):
        table.add_column(col, justify="right" if col else "left")
    for label, key in (("local, in-process", "a_local"), ("Ray, caller + actors", "a_ray")):
        b, a = before[key], after[key]
        table.add_row(label, f"{b['cpu_us_per_step']:.0f}", f"{a['cpu_us_per_step']:.0f}")
    b, a = before["a_ray"], after["a_ray"]
    table.add_row("Ray, caller only", f"{b['caller_cpu_us_per_step']:.0f}", f"{a['caller_cpu_us_per_step']:.0f}")
    table.add_row("Ray, actors only", f"{b['actor_cpu_us_per_step']:.0f}", f"{a['actor_cpu_us_per_step']:.0f}")
    table.add_row("Ray steps/s", f"{b['steps_per_s']:,.0f}", f"{a['steps_per_s']:,.0f}")
    console.print(table)


def show(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"rollout scale: {r['meta']['envs']:,} unitconv envs, {r['meta']['actors']} Ray actors, {r['meta']['cpus']} CPUs")
    for col in ("part", "local (1 process)", "Ray"):
        table.add_column(col, justify="right" if col != "part" else "left")
    a, ra, raw = r["a_local"], r["a_ray"], r["a_ray_actors_only"]
    table.add_row("(a) tool-call steps/s", f"{a['steps_per_s']:,.0f}", f"{ra['steps_per_s']:,.0f} (actors only: {raw['steps_per_s']:,.0f})")
    table.add_row("(a) step latency p50 / p99 ms", f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f}", f"{ra['p50_ms']:.1f} / {ra['p99_ms']:.1f}")
    table.add_row("(a) CPU µs per step (caller + actors)", f"{a['cpu_us_per_step']:.0f}",
                  f"{ra['cpu_us_per_step']:.0f} ({ra['caller_cpu_us_per_step']:.0f} + {ra['actor_cpu_us_per_step']:.0f})")
    table.add_row("(a) memory per env KiB", f"{a['bytes_per_env'] / 1024:.1f}", f"{ra['bytes_per_env'] / 1024:.1f}")
    table.add_row("(b) instant policy turns/s", f"{r['b_local']['turns_per_s']:,.0f}", f"{r['b_ray']['turns_per_s']:,.0f}")
    table.add_row("(c) 1,000 gold episodes/s", f"{r['c_local']['episodes_per_s']:,.0f}", f"{r['c_ray']['episodes_per_s']:,.0f}")
    console.print(table)
    m = r["meta"]
    verdict = "met" if m["targets_met"] else "NOT met"
    console.print(f"target >= {m['target_steps_per_s']:,} steps/s and >= {m['target_ratio']}x local: {verdict} "
                  f"(Ray {ra['steps_per_s']:,.0f} steps/s = {m['ray_over_local']:.2f}x local)")


if __name__ == "__main__":
    main()
