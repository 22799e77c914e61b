"""In-process tool-call step throughput of the shipped UnitConv environment.

Each step is a full text action: Hermes tool-call text is parsed, arguments validated, the tool
run, the result rendered and the observation built. Episodes are reset every ``--episode-len``
steps (reset time is reported separately). One process, one core. Each round steps every
episode once; the median round is the headline number.

With ``--against REV`` the same measurement also runs on commit ``REV`` of this repository
(extracted with ``git archive``), in a second worker process, round for round in alternation
(ABBA order), so both trees see the same machine load; the table adds the baseline and the
ratio of the medians. On a shared machine that ratio is steadier than either absolute figure.

    python benchmarks/env_step.py                    # table + benchmarks/results/env_step.json
    python benchmarks/env_step.py --against HEAD~1   # the same, beside the previous commit
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("format", "steps/s (median)", "steps/s (best)", "incl. resets", "p50 µs", "p99 µs", "reset µs")


class Bench:
    """One format's environment and tasks, stepped one round at a time in this process."""

    def __init__(self, env_id: str, steps: int, episode_len: int, tool_format: str):
        import toolgym  # imported here: a worker imports the tree it was started on
        from toolgym.envs.types import Limits, ToolCall
        from toolgym.rollouts import sample_tasks

        actions = [
            ToolCall(id="a", name="convert", arguments={"value": 12.5, "from_unit": "mi", "to_unit": "km"}),
            ToolCall(id="b", name="calculate", arguments={"expression": "20.1168 * 3"}),
            ToolCall(id="c", name="store", arguments={"name": "leg_total", "value": 60.3504}),
            ToolCall(id="d", name="recall", arguments={"name": "leg_total"}),
        ]
        self.env = toolgym.make(env_id, tool_format=tool_format)
        self.texts = [self.env.format.render_turn("", [c]) for c in actions]
        self.episode_len = episode_len
        episodes = max(1, steps // episode_len)
        # Budgets raised so no episode ends early: every timed step is a tool-call step.
        limits = Limits(max_turns=episode_len + 1, max_tool_calls=episode_len + 1)
        self.tasks = [t.model_copy(update={"limits": limits}) for t in sample_tasks(env_id, episodes, seed=0)]

    def round(self) -> dict[str, Any]:
        """Step every episode once: step and reset nanoseconds, one latency sample per episode."""
        env, texts, n = self.env, self.texts, self.episode_len
        clock = time.perf_counter_ns
        step_ns = reset_ns = 0
        sampled = []
        for e, task in enumerate(self.tasks):
            t0 = clock()
            env.reset(seed=e, options={"task": task})
            t1 = clock()
            reset_ns += t1 - t0
            for i in range(n):
                if i == n // 2:  # one timed sample per episode for the latency percentiles
                    s0 = clock()
                    env.step(texts[i % len(texts)])
                    sampled.append(clock() - s0)
                else:
                    env.step(texts[i % len(texts)])
            step_ns += clock() - t1
        return {"steps": len(self.tasks) * n, "episodes": len(self.tasks), "step_ns": step_ns, "reset_ns": reset_ns, "sampled": sampled}


def summarize(rounds: list[dict[str, Any]], episode_len: int) -> dict[str, float]:
    """The JSON row of one format from its rounds."""
    rates = [r["steps"] / (r["step_ns"] / 1e9) for r in rounds]
    q = statistics.quantiles([s for r in rounds for s in r["sampled"]], n=100)
    mean_reset_us = sum(r["reset_ns"] for r in rounds) / 1e3 / sum(r["episodes"] for r in rounds)
    median_rate = statistics.median(rates)
    return {
        "steps_per_round": rounds[0]["steps"],
        "rounds": len(rounds),
        "steps_per_s_median": median_rate,
        "steps_per_s_best": max(rates),
        "steps_per_s_with_resets": 1e6 / (1e6 / median_rate + mean_reset_us / episode_len),
        "p50_us": q[49] / 1e3,
        "p99_us": q[98] / 1e3,
        "mean_reset_us": mean_reset_us,
    }


def worker() -> None:
    """``--worker``: read one JSON command per line ({"setup": ...} or {"round": true}), answer one JSON line."""
    bench: Bench | None = None
    for line in sys.stdin:
        command = json.loads(line)
        if "setup" in command:
            bench = Bench(**command["setup"])
            print(json.dumps({"ok": True}), flush=True)
        else:
            if bench is None:
                raise RuntimeError("the first command must be a setup")
            print(json.dumps(bench.round()), flush=True)


class Worker:
    """A ``--worker`` process that imports toolgym from ``tree``."""

    def __init__(self, tree: Path):
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir(),
        )

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.proc.stdin is None or self.proc.stdout is None:
            raise RuntimeError("worker pipes are closed")
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"benchmark worker exited ({self.proc.wait()}); see its error above")
        return json.loads(answer)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def extract(rev: str, into: Path) -> str:
    """Write commit ``rev`` of this repository into ``into``; returns its full hash."""
    full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", full], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return full


def compare(args: argparse.Namespace, formats: list[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Rounds of this tree and of ``--against`` in ABBA alternation, one worker process each."""
    with tempfile.TemporaryDirectory(prefix="env_step_base_") as tmp:
        rev = extract(args.against, Path(tmp))
        workers = {"this": Worker(ROOT), "base": Worker(Path(tmp))}
        rounds: dict[str, dict[str, list[dict[str, Any]]]] = {side: {fmt: [] for fmt in formats} for side in workers}
        try:
            for fmt in formats:
                setup = {"env_id": args.env, "steps": args.steps, "episode_len": args.episode_len, "tool_format": fmt}
                for w in workers.values():
                    w.ask({"setup": setup})
                    w.ask({"round": True})  # warm-up round, not counted
                for r in range(args.rounds):
                    order = ["this", "base"] if r % 2 == 0 else ["base", "this"]
                    for side in order:
                        rounds[side][fmt].append(workers[side].ask({"round": True}))
        finally:
            for w in workers.values():
                w.close()
    this = {fmt: summarize(rounds["this"][fmt], args.episode_len) for fmt in formats}
    base = {fmt: summarize(rounds["base"][fmt], args.episode_len) for fmt in formats}
    return this, base, rev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="toolgym/unitconv-v0")
    parser.add_argument("--steps", type=int, default=100_000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="the median round is reported")
    parser.add_argument("--episode-len", type=int, default=20)
    parser.add_argument("--formats", default="hermes,openai,kimi_k2")
    parser.add_argument("--against", metavar="REV", help="also measure this git commit, rounds alternating with this tree's")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "env_step.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()

    from rich.console import Console
    from rich.table import Table

    formats = args.formats.split(",")
    base: dict[str, Any] | None = None
    if args.against:
        rows, base, rev = compare(args, formats)
    else:
        rows = {}
        for fmt in formats:
            bench = Bench(args.env, args.steps, args.episode_len, fmt)
            rows[fmt] = summarize([bench.round() for _ in range(args.rounds)], args.episode_len)
    table = Table(title=f"{args.env}: tool-call steps, one process ({platform.processor() or platform.machine()})")
    for col in COLUMNS + (("baseline median", "baseline p50 µs", "median ratio") if base else ()):
        table.add_column(col, justify="right")
    for fmt, r in rows.items():
        cells = [fmt, f"{r['steps_per_s_median']:,.0f}", f"{r['steps_per_s_best']:,.0f}", f"{r['steps_per_s_with_resets']:,.0f}",
                 f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}", f"{r['mean_reset_us']:.1f}"]
        if base:
            b = base[fmt]
            cells += [f"{b['steps_per_s_median']:,.0f}", f"{b['p50_us']:.1f}", f"{r['steps_per_s_median'] / b['steps_per_s_median']:.2f}x"]
        table.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 160).print(table)  # piped: no 80-column squeeze
    if base:
        print(f"baseline: {args.against} = {rev[:10]}")
    report: dict[str, Any] = {"env": args.env, "python": platform.python_version(), "results": rows}
    if base:
        report["baseline"] = {"rev": rev, "results": base}
        report["median_ratio"] = {fmt: rows[fmt]["steps_per_s_median"] / base[fmt]["steps_per_s_median"] for fmt in formats}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
