"""What the sync edge of a hook costs: ``run_sync(coro)`` against calling the async hook from a loop.

Every hook is one ``async def``; sync callers go through ``toolgym.aio.run_sync``, which
drives the coroutine by hand and needs no event loop when it never suspends. This measures,
per call (best of ``--repeats`` batches, the least noisy estimate on a shared machine):

- ``run_sync`` of a coroutine that returns at once, beside a plain function call;
- ``ToolBox.call`` (sync edge) against ``await ToolBox.acall`` for a pure-Python tool;
- ``ToolEnv.step`` (sync edge) against ``await ToolEnv.astep`` on UnitConv (hermes text);
- ``run_sync`` of a coroutine that does suspend (finished on this thread's loop).

    python benchmarks/sync_edge.py          # table + benchmarks/results/sync_edge.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.aio import loop_needed, run_sync
from toolgym.envs.dispatch import ToolBox
from toolgym.envs.tools import collect_tools, tool
from toolgym.envs.types import Limits, ToolCall
from toolgym.rollouts import sample_tasks


def best_ns(fn: Callable[[], Any], batch: int, repeats: int) -> float:
    """Best mean time per call over ``repeats`` batches of ``batch`` calls (ns)."""
    best = float("inf")
    clock = time.perf_counter_ns
    for _ in range(repeats):
        t0 = clock()
        for _ in range(batch):
            fn()
        best = min(best, (clock() - t0) / batch)
    return best


async def abest_ns(fn: Callable[[], Any], batch: int, repeats: int) -> float:
    """``best_ns`` for an async callable, awaited inside a running loop."""
    best = float("inf")
    clock = time.perf_counter_ns
    for _ in range(repeats):
        t0 = clock()
        for _ in range(batch):
            await fn()
        best = min(best, (clock() - t0) / batch)
    return best


class _Adder:
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: First.
            b: Second.
        """
        return a + b


def _stepping_env() -> tuple[Any, list[str], Callable[[], None]]:
    env = toolgym.make("toolgym/unitconv-v0")
    call = ToolCall(id="a", name="convert", arguments={"value": 12.5, "from_unit": "mi", "to_unit": "km"})
    text = env.unwrapped.format.render_turn("", [call])
    task = sample_tasks("toolgym/unitconv-v0", 1, seed=0)[0].model_copy(update={"limits": Limits(max_turns=10**9, max_tool_calls=10**9)})

    def reset() -> None:
        env.reset(seed=0, options={"task": task})

    reset()
    return env, [text], reset


def measure(batch: int, repeats: int) -> dict[str, float]:
    async def pure() -> int:
        return 1

    async def suspends() -> int:
        await loop_needed()
        await asyncio.sleep(0)
        return 1

    def plain() -> int:
        return 1

    box = ToolBox(collect_tools(_Adder()))
    add = ToolCall(id="c", name="add", arguments={"a": 1, "b": 2})
    env, (text,), reset = _stepping_env()
    out = {
        "plain_call_ns": best_ns(plain, batch, repeats),
        "run_sync_pure_ns": best_ns(lambda: run_sync(pure()), batch, repeats),
        "run_sync_suspending_ns": best_ns(lambda: run_sync(suspends()), max(1, batch // 20), repeats),
        "toolbox_call_ns": best_ns(lambda: box.call(add), batch, repeats),
        "env_step_ns": best_ns(lambda: env.step(text), batch // 10, repeats),
    }

    async def inside_loop() -> dict[str, float]:
        reset()
        return {
            "toolbox_acall_ns": await abest_ns(lambda: box.acall(add), batch, repeats),
            "env_astep_ns": await abest_ns(lambda: env.astep(text), batch // 10, repeats),
        }

    out.update(asyncio.run(inside_loop()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=20_000, help="calls per timed batch")
    parser.add_argument("--repeats", type=int, default=7, help="batches; the best is reported")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sync_edge.json")
    args = parser.parse_args()

    r = measure(args.batch, args.repeats)
    table = Table(title=f"sync edges over async hooks, best of {args.repeats} ({platform.processor() or platform.machine()})")
    for col in ("what", "sync edge µs", "async (in a loop) µs", "edge overhead µs"):
        table.add_column(col, justify="right")
    table.add_row("coroutine that returns at once", f"{r['run_sync_pure_ns'] / 1e3:.2f}", "", f"{(r['run_sync_pure_ns'] - r['plain_call_ns']) / 1e3:.2f} vs a plain call")
    table.add_row("ToolBox.call / acall (pure tool)", f"{r['toolbox_call_ns'] / 1e3:.2f}", f"{r['toolbox_acall_ns'] / 1e3:.2f}", f"{(r['toolbox_call_ns'] - r['toolbox_acall_ns']) / 1e3:.2f}")
    table.add_row("ToolEnv.step / astep (UnitConv)", f"{r['env_step_ns'] / 1e3:.2f}", f"{r['env_astep_ns'] / 1e3:.2f}", f"{(r['env_step_ns'] - r['env_astep_ns']) / 1e3:.2f}")
    table.add_row("coroutine that suspends once", f"{r['run_sync_suspending_ns'] / 1e3:.2f}", "", "finished on this thread's loop")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "batch": args.batch, "repeats": args.repeats, "results": r}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
