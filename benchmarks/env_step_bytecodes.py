"""Python bytecodes executed per UnitConv step: a count that neither load nor threads can move.

``env_step_instructions.py`` counts machine instructions under valgrind, which includes the
deadline watchdog thread (its wake-ups follow wall time) and moved by 10-15% between runs of
the same tree on a loaded machine. This counts the bytecodes the stepping thread executes
(``sys.settrace`` with opcode events): the same tree gives the same number every run, so a
change of a few bytecodes in the step path shows. Workload: ``env_step.py``'s episodes (the
same four tool calls), steps minus resets, divided by the number of steps.

    python benchmarks/env_step_bytecodes.py --against 9ea446a --against HEAD
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from env_step import extract  # a sibling script: benchmarks/ is on sys.path when run as python benchmarks/X.py

ROOT = Path(__file__).resolve().parents[1]
EPISODES, EPISODE_LEN = 10, 20
CHILD = f"""
import sys
from env_step import Bench
bench = Bench("toolgym/unitconv-v0", {EPISODES} * {EPISODE_LEN}, {EPISODE_LEN}, sys.argv[1])
bench.round()  # warm-up: imports, caches, first-call paths
count = 0
def tracer(frame, event, arg):
    global count
    frame.f_trace_opcodes = True
    if event == "opcode":
        count += 1
    return tracer
def run(step):
    for e, task in enumerate(bench.tasks):
        bench.env.reset(seed=e, options={{"task": task}})
        for i in range(bench.episode_len if step else 0):
            bench.env.step(bench.texts[i % len(bench.texts)])
sys.settrace(tracer); run(True); sys.settrace(None)
steps, count = count, 0
sys.settrace(tracer); run(False); sys.settrace(None)
print((steps - count) / ({EPISODES} * {EPISODE_LEN}))
"""


def per_step(tree: Path, fmt: str) -> float:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{ROOT / 'benchmarks'}", PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-c", CHILD, fmt], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="hermes,openai,kimi_k2")
    parser.add_argument("--against", action="append", default=[], metavar="REV", help="also count this git commit (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "env_step_bytecodes.json")
    args = parser.parse_args()
    formats = args.formats.split(",")
    rows: dict[str, dict[str, float]] = {"this tree": {f: per_step(ROOT, f) for f in formats}}
    for rev in args.against:
        with tempfile.TemporaryDirectory(prefix="env_step_rev_") as tmp:
            extract(rev, Path(tmp))
            rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True, text=True).stdout.strip()
            rows[rev] = {f: per_step(Path(tmp), f) for f in formats}
    print(f"{'tree':>12} " + " ".join(f"{f:>10}" for f in formats) + "   (bytecodes per step)")
    for name, row in rows.items():
        print(f"{name:>12} " + " ".join(f"{row[f]:>10,.1f}" for f in formats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    args.out.write_text(json.dumps({"python": sys.version.split()[0], "this_tree_head": head, "bytecodes_per_step": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
