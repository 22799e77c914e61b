"""Thousands of live simulated-API environments in one process: memory per env and step rate.

For each shipped API domain, ``--envs`` environments are built and reset, each to its own
freshly generated task (as in training, no two share a world). Every environment then replays
its gold solution as Hermes text, round-robin across all live environments: each step parses
the text, validates the arguments, runs a read or a write on the domain state and renders the
observation. Tool-call steps are timed apart from the final answer step (which hashes the
state for the reward) and from the ``restore`` that rewinds each env for the next round.

Times are CPU time of the worker process (``time.process_time``): on a shared machine wall
time also counts other jobs' turns on the core. Memory is measured two ways: ``tracemalloc``
(bytes Python allocated per live env, its task included, after reset and again after its
gold tool calls) and the growth of the process RSS while the envs were built, divided by
their number. Each domain runs in a fresh process,
pinned to one core where the OS allows.

Garbage collection. Ten thousand envs hold millions of GC-tracked objects, and CPython's
cyclic collector re-traverses them as states are replaced: with the default settings it takes
most of the time. Steps create no reference cycles (the ``cyclic garbage`` row counts what the
collector finds), so a host can defer collection: with GC ``deferred`` each
round runs inside ``toolgym.rollouts.gcpolicy.deferred_gc`` (the policy ``run_episodes(...,
gc_policy="deferred")`` uses): automatic collection is off during the round and one full
``gc.collect()`` ends it; that time is counted in the all-in rate. GC ``frozen`` is
``deferred_gc(freeze=True)``: the survivors of each collection are frozen, so the next one
traverses only what its round created.

Worlds. ``cow`` is the library as it is: a restored world shares its entities with
the snapshot and every sibling; read-only tools are handed the shared entities, and an entity
is copied when a tool that may write takes it out (the write barrier); the final digest
re-encodes only those (``toolgym.envs.api.cow``). ``copy`` puts back, in this process only,
what the library did before: a whole-world validated copy at every restore and a full
re-encoding for every digest. ``--configs`` lists WORLDS:GC pairs, each run in its own
process; the default runs the library as it was (``copy:deferred``) and as it is, in one run.
``--against REV`` runs commit REV's own copy of this benchmark with the same settings (its
code, in a temporary tree) and this tree's in ABBA order (REV, this tree, this tree, REV), so
that a drift in the machine's load weighs on both alike; each row is the mean of its tree's
two passes (both passes are kept in the JSON), shown side by side with after/before ratios.

    python benchmarks/api_envs.py                                  # 10,000 envs per domain
    python benchmarks/api_envs.py --configs copy:deferred,cow:frozen   # only before and after
    python benchmarks/api_envs.py --envs 500 --rounds 2 --traced 200   # a quick run
    python benchmarks/api_envs.py --configs cow:frozen --against 55a3421  # before/after the write barrier
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from env_step import extract  # a sibling script: benchmarks/ is on sys.path when run as python benchmarks/X.py
from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.envs.types import ToolCall
from toolgym.rollouts.gcpolicy import GcStats, deferred_gc

DOMAINS = ("toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0")
TARGET_BYTES, TARGET_RATE, TARGET_RATIO = 100 * 1024, 20_000, 0.5
GC_MODES, WORLD_MODES = ("default", "deferred", "frozen"), ("copy", "cow")


def use_whole_world_copies() -> None:
    """Put back, in this process, the world handling the library had before copy-on-write:
    a validated whole-world copy at every snapshot and restore, a full encoding per digest."""
    from toolgym.envs.api.domain import StateModel
    from toolgym.envs.api.env import ApiEnv
    from toolgym.envs.env import ToolEnv

    StateModel.__deepcopy__ = lambda self, memo=None: type(self).model_validate(self.model_dump())  # type: ignore[method-assign]
    ApiEnv.state_digest = ToolEnv.state_digest  # type: ignore[method-assign]
    ApiEnv.save_world = ToolEnv.save_world  # type: ignore[method-assign]  # (ApiEnv forks state models directly)
    ApiEnv.load_saved_world = ToolEnv.load_saved_world  # type: ignore[method-assign]


def rss_bytes() -> int:
    """Resident set size now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build(env_id: str, n: int, offset: int = 0) -> tuple[list[Any], list[list[str]], float]:
    """``n`` live envs, each reset to its own task (train seeds ``offset..``); mean reset µs."""
    generate = type(toolgym.make(env_id)).task_generator
    envs, scripts, reset_ns = [], [], 0
    for i in range(n):
        env, task = toolgym.make(env_id), generate(offset + i)
        t0 = time.process_time_ns()
        env.reset(seed=i, options={"task": task})
        reset_ns += time.process_time_ns() - t0
        envs.append(env)
        scripts.append(
            [
                env.format.render_turn("", [ToolCall(id=f"g{k}", name=a.name, arguments=a.arguments)])
                for k, a in enumerate(task.gold_actions)
            ]
        )
    return envs, scripts, reset_ns / 1e3 / n


def traced_bytes_per_env(env_id: str, n: int) -> dict[str, float]:
    """Python allocations per live env, task included: after reset, and after its gold calls."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    envs, scripts, _ = build(env_id, n, offset=10**6)
    after_reset = tracemalloc.get_traced_memory()[0] - base
    for env, script in zip(envs, scripts, strict=True):
        for text in script:
            env.step(text)
    after_calls = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"bytes_per_env_reset": after_reset / n, "bytes_per_env_after_gold_calls": after_calls / n}


def write_fraction(envs: list[Any], scripts: list[list[str]]) -> float:
    """Share of the replayed calls that change the state digest (a sample of envs, then rewound)."""
    writes = calls = 0
    for env, script in zip(envs[:300], scripts[:300], strict=True):
        snap = env.snapshot()
        for text in script:
            before = env.state_digest()
            env.step(text)
            writes += env.state_digest() != before
            calls += 1
        env.restore(snap)
    return writes / max(calls, 1)


def run_round(
    envs: list[Any], snaps: list[Any], scripts: list[list[str]], answers: list[str], gc_mode: str
) -> dict[str, float]:
    # CPU time of this (pinned, single-threaded) process: on a shared machine wall time also
    # counts other jobs' turns on the core, which move it by several times between runs.
    clock = time.process_time_ns
    policy = deferred_gc(freeze=gc_mode == "frozen") if gc_mode != "default" else contextlib.nullcontext(GcStats())
    with policy as collected:  # the library's policy
        r0 = clock()
        for env, snap in zip(envs, snaps, strict=True):
            env.restore(snap)
        r1 = clock()
        for k in range(max(len(s) for s in scripts)):
            for env, script in zip(envs, scripts, strict=True):
                if k < len(script):
                    env.step(script[k])
        r2 = clock()
        solved = sum(env.step(answer)[1] == 1.0 for env, answer in zip(envs, answers, strict=True))
        r3 = clock()
    gc_ns = int(collected.cpu_seconds * 1e9)
    return {"restore": r1 - r0, "steps": r2 - r1, "answers": r3 - r2, "gc": gc_ns, "solved": solved, "cyclic": collected.collected}


def measure(env_id: str, n: int, rounds: int, traced_sample: int, gc_mode: str, worlds: str, pin: bool) -> dict[str, Any]:
    """All numbers of one domain under one GC policy and world handling (run in a fresh process)."""
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if worlds == "copy":
        use_whole_world_copies()
    gc.collect()
    rss0 = rss_bytes()
    envs, scripts, reset_us = build(env_id, n)
    rss_per_env = (rss_bytes() - rss0) / n
    snaps = [env.snapshot() for env in envs]
    t0 = time.process_time_ns()
    for env in envs[:1000]:
        env.snapshot()
    snapshot_us = (time.process_time_ns() - t0) / 1e3 / min(n, 1000)
    answers = [env.task.gold_answer for env in envs]
    writes = write_fraction(envs, scripts)
    results = [run_round(envs, snaps, scripts, answers, gc_mode) for _ in range(rounds)]
    steps = sum(len(s) for s in scripts)
    median = {k: statistics.median(r[k] for r in results) for k in ("restore", "steps", "answers", "gc")}
    all_in_s = sum(median[k] for k in ("restore", "steps", "answers", "gc")) / 1e9
    del envs, snaps, scripts
    gc.unfreeze()
    gc.collect()
    return {
        "env": env_id,
        "gc": gc_mode,
        "worlds": worlds,
        "envs": n,
        "rounds": rounds,
        "tool_call_steps_per_round": steps,
        "steps_per_s": steps / (median["steps"] / 1e9),
        "steps_per_s_all_in": steps / all_in_s,
        "all_in_ratio": (steps / all_in_s) / (steps / (median["steps"] / 1e9)),
        "write_fraction": writes,
        "reset_us": reset_us,
        "snapshot_us": snapshot_us,
        "restore_us": median["restore"] / 1e3 / n,
        "answer_step_us": median["answers"] / 1e3 / n,
        "gc_ms_per_round": median["gc"] / 1e6,
        "gc_ms_each_round": [r["gc"] / 1e6 for r in results],
        "cyclic_garbage": max(r["cyclic"] for r in results),
        "gold_success": min(r["solved"] for r in results) / n,
        "rss_bytes_per_env": rss_per_env,
        **traced_bytes_per_env(env_id, min(n, traced_sample)),
        "traced_sample": min(n, traced_sample),
    }


ROWS = (
    ("live envs", lambda r: f"{r['envs']:,}"),
    ("tool-call steps/s", lambda r: f"{r['steps_per_s']:,.0f}"),
    ("steps/s all-in (restore, answer, gc)", lambda r: f"{r['steps_per_s_all_in']:,.0f}"),
    ("all-in / tool-call rate", lambda r: f"{r['all_in_ratio']:.2f}"),
    ("calls that write", lambda r: f"{r['write_fraction']:.0%}"),
    ("KB/env traced, after reset", lambda r: f"{r['bytes_per_env_reset'] / 1024:.1f}"),
    ("KB/env traced, after gold calls", lambda r: f"{r['bytes_per_env_after_gold_calls'] / 1024:.1f}"),
    ("KB/env RSS growth", lambda r: f"{r['rss_bytes_per_env'] / 1024:.1f}"),
    ("reset µs", lambda r: f"{r['reset_us']:.0f}"),
    ("snapshot µs", lambda r: f"{r['snapshot_us']:.0f}"),
    ("restore µs", lambda r: f"{r['restore_us']:.0f}"),
    ("answer step µs (digest)", lambda r: f"{r['answer_step_us']:.0f}"),
    ("gc between rounds, ms", lambda r: f"{r['gc_ms_per_round']:.0f}"),
    ("cyclic garbage found", lambda r: f"{r['cyclic_garbage']:,}"),
    ("gold replays solved", lambda r: f"{r['gold_success']:.0%}"),
)


def report(results: list[dict[str, Any]], cpu: str) -> None:
    table = Table(title=f"Live simulated-API envs in one process, one core ({cpu}, Python {platform.python_version()})")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r['env'].split('/')[-1]}\n{r['worlds']}, gc={r['gc']}", justify="right")
    for name, cell in ROWS:
        table.add_row(name, *(cell(r) for r in results))
    Console(width=max(100, 30 + 22 * len(results))).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=10_000, help="live environments per domain")
    parser.add_argument("--rounds", type=int, default=3, help="gold replays of every env; the median round is reported")
    parser.add_argument("--traced", type=int, default=2_000, help="envs measured with tracemalloc (slow, so a sample)")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument(
        "--configs", default="copy:deferred,cow:deferred,cow:frozen",
        help=f"comma list of WORLDS:GC, WORLDS one of {', '.join(WORLD_MODES)}, GC one of {', '.join(GC_MODES)}",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin each worker to one CPU core")
    parser.add_argument("--against", metavar="REV", help="first run commit REV's benchmark with the same settings; show both")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "api_envs.json")
    args = parser.parse_args()
    configs = [tuple(c.split(":", 1)) for c in args.configs.split(",")]
    for config in configs:
        if len(config) != 2 or config[0] not in WORLD_MODES or config[1] not in GC_MODES:
            parser.error(f"--configs: {':'.join(config)!r} is not WORLDS:GC, e.g. cow:frozen")
    passes: dict[str, list[list[dict[str, Any]]]] = {"rev": [], "this": []}
    for tree in ("rev", "this", "this", "rev") if args.against else ("this",):  # ABBA: load drift hits both alike
        passes[tree].append(run_against(args) if tree == "rev" else run_here(args, configs))
    before, results = mean_of_passes(passes["rev"]), mean_of_passes(passes["this"])
    cpu = platform.processor() or platform.machine()
    order = args.domains.split(",")
    shown = sorted(before + results, key=lambda r: order.index(r["env"]))  # each domain: REV's rows, then ours
    report(shown, cpu)
    for old, new in zip(before, results, strict=False):
        print(f"{new['env']} {new['worlds']} gc={new['gc']}, this tree / {old['worlds']}: "
              + ", ".join(f"{key} {new[key] / old[key]:.2f}x" for key in RATIO_KEYS if old.get(key)))
    for r in shown:
        memory = max(r["bytes_per_env_after_gold_calls"], r["rss_bytes_per_env"]) <= TARGET_BYTES
        speed = r["steps_per_s"] >= TARGET_RATE
        ratio = r["all_in_ratio"] >= TARGET_RATIO
        print(f"{r['env']} {r['worlds']} gc={r['gc']}: memory {'meets' if memory else 'MISSES'} <= 100 KB/env; "
              f"tool-call steps {'meet' if speed else 'MISS'} >= {TARGET_RATE:,}/s; "
              f"all-in rate {'meets' if ratio else 'MISSES'} >= {TARGET_RATIO} x tool-call rate")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "cpu": cpu,
        "cores_available": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    meta["order"] = ["rev", "this", "this", "rev"] if args.against else ["this"]
    args.out.write_text(json.dumps({**meta, "results": results, "against": before, "passes": passes}, indent=2))
    print(f"wrote {args.out}")


ROOT = Path(__file__).resolve().parent.parent
RATIO_KEYS = ("all_in_ratio", "steps_per_s", "steps_per_s_all_in", "restore_us", "answer_step_us", "gc_ms_per_round")


def run_here(args: argparse.Namespace, configs: list[tuple[str, ...]]) -> list[dict[str, Any]]:
    """This tree's rows: every domain and config, each in a fresh process (clean RSS, no heap
    left by the previous run)."""
    results = []
    for env_id in args.domains.split(","):
        for world, mode in configs:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                job = pool.submit(measure, env_id, args.envs, args.rounds, args.traced, mode, world, not args.no_pin)
                results.append(job.result())
    return results


def mean_of_passes(passes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per domain and config: numbers averaged over the passes, the rest from the first."""
    if not passes:
        return []
    rows = []
    for same in zip(*passes, strict=True):
        row = dict(same[0])
        for key, value in row.items():
            values = [r[key] for r in same]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and values.count(value) != len(values):
                row[key] = statistics.fmean(values)
        row["passes"] = len(same)
        rows.append(row)
    return rows


def run_against(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Commit ``args.against``'s own benchmark, same settings, in a subprocess; its results,
    their ``worlds`` label prefixed with the commit."""
    with tempfile.TemporaryDirectory(prefix="api_envs_base_") as tmp:
        rev = extract(args.against, Path(tmp))
        out = Path(tmp) / "before.json"
        cmd = [sys.executable, "benchmarks/api_envs.py", "--envs", str(args.envs), "--rounds", str(args.rounds),
               "--traced", str(args.traced), "--domains", args.domains, "--configs", args.configs, "--out", str(out)]
        if args.no_pin:
            cmd.append("--no-pin")
        subprocess.run(cmd, cwd=tmp, env={**os.environ, "PYTHONPATH": tmp}, check=True, stdout=subprocess.DEVNULL)
        return [{**r, "worlds": f"{rev[:7]} {r['worlds']}", "rev": rev} for r in json.loads(out.read_text())["results"]]


if __name__ == "__main__":
    main()
