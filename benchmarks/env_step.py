"""In-process tool-call step throughput of the shipped UnitConv environment.

Each step is a full text action: Hermes tool-call text is parsed, arguments validated, the tool
run, the result rendered and the observation built. Episodes are reset every ``--episode-len``
steps (reset time is reported separately). One process, one core. Each round steps every
episode once; the median round is the headline number.

    python benchmarks/env_step.py            # table + benchmarks/results/env_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.envs.types import Limits, ToolCall
from toolgym.rollouts import sample_tasks

ACTIONS = [
    ToolCall(id="a", name="convert", arguments={"value": 12.5, "from_unit": "mi", "to_unit": "km"}),
    ToolCall(id="b", name="calculate", arguments={"expression": "20.1168 * 3"}),
    ToolCall(id="c", name="store", arguments={"name": "leg_total", "value": 60.3504}),
    ToolCall(id="d", name="recall", arguments={"name": "leg_total"}),
]


def measure(env_id: str, steps: int, episode_len: int, tool_format: str, rounds: int) -> dict[str, float]:
    env = toolgym.make(env_id, tool_format=tool_format)
    texts = [env.format.render_turn("", [c]) for c in ACTIONS]
    episodes = max(1, steps // episode_len)
    # Budgets raised so no episode ends early: every timed step is a tool-call step.
    limits = Limits(max_turns=episode_len + 1, max_tool_calls=episode_len + 1)
    tasks = [t.model_copy(update={"limits": limits}) for t in sample_tasks(env_id, episodes, seed=0)]
    clock = time.perf_counter_ns
    round_rates, reset_ns, sampled = [], 0, []
    for _ in range(rounds):
        step_ns = 0
        for e, task in enumerate(tasks):
            t0 = clock()
            env.reset(seed=e, options={"task": task})
            t1 = clock()
            reset_ns += t1 - t0
            for i in range(episode_len):
                if i == episode_len // 2:  # one timed sample per episode for the latency percentiles
                    s0 = clock()
                    env.step(texts[i % len(texts)])
                    sampled.append(clock() - s0)
                else:
                    env.step(texts[i % len(texts)])
            step_ns += clock() - t1
        round_rates.append(episodes * episode_len / (step_ns / 1e9))
    q = statistics.quantiles(sampled, n=100)
    mean_reset_us = reset_ns / 1e3 / (episodes * rounds)
    median_rate = statistics.median(round_rates)
    return {
        "steps_per_round": episodes * episode_len,
        "rounds": rounds,
        "steps_per_s_median": median_rate,
        "steps_per_s_best": max(round_rates),
        "steps_per_s_with_resets": 1e6 / (1e6 / median_rate + mean_reset_us / episode_len),
        "p50_us": q[49] / 1e3,
        "p99_us": q[98] / 1e3,
        "mean_reset_us": mean_reset_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="toolgym/unitconv-v0")
    parser.add_argument("--steps", type=int, default=100_000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="the median round is reported")
    parser.add_argument("--episode-len", type=int, default=20)
    parser.add_argument("--formats", default="hermes,openai,kimi_k2")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "env_step.json")
    args = parser.parse_args()

    rows = {fmt: measure(args.env, args.steps, args.episode_len, fmt, args.rounds) for fmt in args.formats.split(",")}
    table = Table(title=f"{args.env}: tool-call steps, one process ({platform.processor() or platform.machine()})")
    for col in ("format", "steps/s (median)", "steps/s (best)", "incl. resets", "p50 µs", "p99 µs", "reset µs"):
        table.add_column(col, justify="right")
    for fmt, r in rows.items():
        table.add_row(
            fmt, f"{r['steps_per_s_median']:,.0f}", f"{r['steps_per_s_best']:,.0f}", f"{r['steps_per_s_with_resets']:,.0f}",
            f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}", f"{r['mean_reset_us']:.1f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": args.env, "python": platform.python_version(), "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
