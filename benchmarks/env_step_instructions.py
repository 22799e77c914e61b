"""Instructions per UnitConv step, counted by valgrind: a figure machine load cannot move.

Wall-clock rates on a shared machine move by 10-20% between runs; the number of instructions
a step executes does not. Each measurement runs ``benchmarks/env_step.py``'s workload
(20-step episodes, the same four tool calls) under ``valgrind --tool=cachegrind`` twice, once
stepping and once only resetting, and divides the difference by the number of steps. The
watchdog thread's instructions are included. Needs ``valgrind`` (``apt-get install valgrind``).

    python benchmarks/env_step_instructions.py --against 4afd7e1 --against a9c2b02
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from env_step import extract  # a sibling script: benchmarks/ is on sys.path when run as python benchmarks/X.py

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys
from env_step import Bench
bench = Bench("toolgym/unitconv-v0", 50 * 20, 20, sys.argv[1])
bench.round()  # warm-up: imports, caches, first-call paths
if sys.argv[2] == "steps":
    bench.round()
else:
    for e, task in enumerate(bench.tasks):
        bench.env.reset(seed=e, options={"task": task})
"""


def instructions(tree: Path, fmt: str, mode: str) -> int:
    # A fixed hash seed: with random string hashing, dict and set layouts (and so the counts) move
    # by a few percent between runs of the same tree.
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, "-c", CHILD, fmt, mode],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=True,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_step(tree: Path, fmt: str) -> float:
    return (instructions(tree, fmt, "steps") - instructions(tree, fmt, "resets")) / (50 * 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="hermes,openai,kimi_k2")
    parser.add_argument("--against", action="append", default=[], metavar="REV", help="also count this git commit (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "env_step_instructions.json")
    args = parser.parse_args()
    formats = args.formats.split(",")
    rows: dict[str, dict[str, float]] = {"this tree": {f: per_step(ROOT, f) for f in formats}}
    for rev in args.against:
        with tempfile.TemporaryDirectory(prefix="env_step_rev_") as tmp:
            extract(rev, Path(tmp))
            rows[rev] = {f: per_step(Path(tmp), f) for f in formats}
    print(f"{'tree':>12} " + " ".join(f"{f:>12}" for f in formats) + "   (instructions per step)")
    for name, row in rows.items():
        print(f"{name:>12} " + " ".join(f"{row[f]:>12,.0f}" for f in formats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"instructions_per_step": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
