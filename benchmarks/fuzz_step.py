"""Fuzz ``step`` on every shipped simulated environment with generated hostile calls.

Each env gets ``--calls`` steps (default 100,000). A step is one of: a schema-valid call with
one argument replaced by something hostile (NaN, infinities, 10**400, lone surrogates, 20,000
characters, 150-level nesting, wrong types); the same as structured ``ToolCall`` objects (as an
endpoint's ``tool_calls`` arrive, so NaN reaches the tool); text in the env's format with
numbers rewritten as ``NaN``/``1e400``/6,000 digits, cut or wrapped in 3,000 brackets; parallel
calls; unknown, megabyte-long tool names; and plain garbage. Episodes are reset with a new seed
every ``--episode-len`` steps and their worlds hashed. Counted:

* exceptions out of ``step`` (must be 0) and out of ``state_digest`` (must be 0);
* observations longer than the task's ``max_output_chars`` plus the truncation marker;
* steps that held the caller longer than their calls' deadlines plus ``MARGIN_S``;
* failed calls that changed the world (sampled): every tool call must be atomic.

    python benchmarks/fuzz_step.py                 # table + benchmarks/results/fuzz_step.json
    python benchmarks/fuzz_step.py --calls 2000    # a quick look
    python benchmarks/fuzz_step.py --envs toolgym/shell-v0   # real bwrap shells (ShellFuzzer)

``toolgym/shell-v0`` runs in real sandboxes: its steps are hostile bash commands (lone
backslashes, unterminated quotes and heredocs, binary output, protocol-like text, closed
stdio, killed shells, shadowed functions) and file-tool calls with hostile paths and contents.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.envs.formats import ParsedTurn
from toolgym.envs.sim.generate import ValueGenerator
from toolgym.envs.types import Limits, ToolCall
from toolgym.rollouts import sample_tasks

ENVS = ["toolgym/unitconv-v0", "toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0"]
TOOL_TIMEOUT_S = 1.0
SHELL_TOOL_TIMEOUT_S = 0.6
"""Shell steps: commands that never end (closed stdout, reads) cost their timeout; keep it short."""
MARGIN_S = 0.25
MARKER = len("\n...[output truncated: 0000000000 more characters]")
ROLLBACK_SAMPLE = 0.05


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = [value]
    return value


HOSTILE: list[Any] = [
    float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324, 10**400, -(10**30), 2**63,
    "\ud800", "a\udfffb", "\u2028\u2029\x85", "\x00", "A" * 20_000, "", " ", "é" * 50, "<tool_call>", "<|tool_call_end|>",
    None, True, False, [], {}, [1, "2", None], {"nested": {"deep": [float("nan")]}}, _deep(150), _deep(40),
]
TEXT_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "9" * 6000, "-0", "1e-400", "[" * 3000 + "]" * 3000]


class Fuzzer:
    """Generates hostile actions for one environment (seeded)."""

    def __init__(self, env: Any, rng: random.Random):
        self.env, self.rng = env, rng
        self.specs = env.toolbox.specs()
        # A pool of schema-valid arguments per tool; mutation makes them hostile.
        self.valid = {s.name: [self._generate(s) for _ in range(50)] for s in self.specs}

    def _generate(self, spec: Any) -> dict[str, Any]:
        try:
            value = ValueGenerator(spec.function.parameters).generate(self.rng)
        except Exception:
            return {}
        return value if isinstance(value, dict) else {}

    def call(self, hostile: bool = True) -> ToolCall:
        gold = self.env.task.gold_actions if self.env.task is not None else []
        if gold and self.rng.random() < 0.5:  # the task's own gold calls reach the tools' success paths
            action = self.rng.choice(gold)
            name, args = action.name, dict(action.arguments)
        else:
            spec = self.rng.choice(self.specs)
            name, args = spec.name, dict(self.rng.choice(self.valid[spec.name]))
        if hostile and self.rng.random() < 0.9:
            keys = list(args) or ["value"]
            for _ in range(self.rng.randint(1, 2)):
                args[self.rng.choice(keys + ["extra_arg"])] = self.rng.choice(HOSTILE)
        return ToolCall(id=f"f{self.rng.getrandbits(16)}", name=name, arguments=args)

    def action(self) -> tuple[str, Any]:
        """(kind, action) for one step."""
        r = self.rng.random()
        if r < 0.30:
            return "structured", ParsedTurn(tool_calls=[self.call()])
        if r < 0.55:
            return "text", self._text([self.call(hostile=False)])
        if r < 0.65:
            calls = [self.call() for _ in range(self.rng.randint(2, 10))]
            return "parallel", ParsedTurn(tool_calls=calls) if self.rng.random() < 0.5 else self._text(calls)
        if r < 0.75:
            name = self.rng.choice(["x" * 1_000_000, self.rng.choice(self.specs).name[::-1], "\ud800", "functions.x:0", ""])
            return "unknown_tool", ParsedTurn(tool_calls=[ToolCall(id="u", name=name, arguments={})])
        if r < 0.85:
            return "valid", self.env.format.render_turn("", [self.call(hostile=False)])
        return "garbage", self._garbage()

    def _text(self, calls: list[ToolCall]) -> str:
        try:
            text = self.env.format.render_turn("", calls)
        except Exception:  # arguments the renderer cannot write (NaN): send a plain call instead
            text = self.env.format.render_turn("", [self.call(hostile=False)])
        choice = self.rng.random()
        if choice < 0.4:  # rewrite one number (or string) as something JSON cannot hold
            for token in ("0", "1", "2", "5", '""'):
                if token in text:
                    return text.replace(token, self.rng.choice(TEXT_NUMBERS), 1)
        if choice < 0.6:
            return text[: self.rng.randint(0, len(text))]
        if choice < 0.7:
            return "[" * 3000 + text + "]" * 3000
        return text

    def _garbage(self) -> str:
        pieces = ["<tool_call>", "</tool_call>", "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "{", "}", '"tool_calls"',
                  "\ud800", "NaN", "\x00", "functions.", ":0", "<|tool_call_argument_begin|>", "[" * 200]
        return "".join(self.rng.choice(pieces) for _ in range(self.rng.randint(1, 30)))


SHELL_PIECES = [
    "\\", "'", '"', "<<EOF", "<<'E'\nx", "$(", "`", "{", "}", "(", ")", ";", "&&", "||", "|", "&", "\n", " ", "echo hi", "exit", "exit 7",
    "exec 1>&-", "exec 2>&-", "exec 0<&-", "cat /proc/1/cmdline", "ps aux", "printf '\\x00\\xff\\xfe'", "head -c 3000 /dev/urandom",
    "yes | head -c 100000", "sleep 0.3 &", "kill -9 $$", "kill -9 -1", "trap 'echo T' DEBUG EXIT", "python3(){ echo fake; }", "export -f python3",
    "export BASH_ENV=/tmp/x", "cd /", "cd ..", "set -e", "set -u", "false", "__tg_respawn__", "deadbeefdeadbeefdeadbeef 0", "\x1b[2J", "é",
    "cat /proc/self/fd/0", "echo x > /proc/$$/fd/0", "read x", "mkfifo p; cat p &", "chmod 000 .", "rm -rf /workspace/*", "touch $'a\\nb'",
    "truncate -s 1T sparse", "ln -s /etc/passwd out", "\ud800", "\x00",
]
"""Pieces of the shell fuzzer's commands: unterminated constructs, protocol-like text, fd and process abuse."""


class ShellFuzzer(Fuzzer):
    """Hostile bash commands and file-tool calls for a shell environment."""

    def call(self, hostile: bool = True) -> ToolCall:
        r = self.rng.random()
        if r < 0.75:
            command = "".join(self.rng.choice(SHELL_PIECES) for _ in range(self.rng.randint(1, 8)))
            return ToolCall(id=f"s{self.rng.getrandbits(16)}", name="bash", arguments={"command": command})
        path = self.rng.choice(["a.txt", "../x", "/etc/passwd", "out", "p", "sparse", "a\nb", "d/e/f", "/proc/1/environ", "", "\ud800", "."])
        if r < 0.85:
            return ToolCall(id="w", name="write_file", arguments={"path": path, "content": self.rng.choice(["x", "\ud800", "y" * 100_000, ""])})
        return ToolCall(id="r", name=self.rng.choice(["read_file", "list_dir"]), arguments={"path": path})


def fuzz(env_id: str, calls: int, episode_len: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    shell = env_id.startswith("toolgym/shell")
    env = toolgym.make(env_id, limits={"command_timeout_s": 2.0, "workspace_mb": 16}) if shell else toolgym.make(env_id)
    timeout_s = SHELL_TOOL_TIMEOUT_S if shell else TOOL_TIMEOUT_S
    limits = Limits(max_turns=episode_len + 1, max_tool_calls=episode_len * 10 + 1, tool_timeout_s=timeout_s)
    tasks = [t.model_copy(update={"limits": limits}) for t in sample_tasks(env_id, 64, seed=seed)]
    env.reset(seed=0, options={"task": tasks[0]})
    fuzzer = (ShellFuzzer if shell else Fuzzer)(env, rng)
    exceptions: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    examples: list[str] = []
    stats = {"oversize": 0, "slow": 0, "rollback_checked": 0, "rollback_broken": 0, "digest_exceptions": 0, "episodes": 0}
    longest_obs, slowest, slowest_action = 0, 0.0, ""
    started = time.perf_counter()
    for step in range(calls):
        if step % episode_len == 0 or env.stop_reason is not None:
            _hash(env, stats, exceptions, examples)
            env.reset(seed=step, options={"task": tasks[(step // episode_len) % len(tasks)]})
            stats["episodes"] += 1
        kind, action = fuzzer.action()
        kinds[kind] += 1
        check = rng.random() < ROLLBACK_SAMPLE
        before = env.state_digest() if check else None
        t0 = time.perf_counter()
        try:
            obs, _, _, _, info = env.step(action)
        except Exception as exc:
            exceptions[f"step: {type(exc).__name__}"] += 1
            if len(examples) < 5:
                examples.append(f"{kind}: {repr(action)[:200]} -> {traceback.format_exc(limit=3)[-600:]}")
            continue
        took = time.perf_counter() - t0
        if took > slowest:
            slowest, slowest_action = took, f"{kind}: {repr(action)[:300]}"
        if took > timeout_s * max(1, info["tool_calls"]) + MARGIN_S:
            stats["slow"] += 1
        for message in obs.messages:
            longest_obs = max(longest_obs, len(message.content))
            if len(message.content) > limits.max_output_chars + MARKER:
                stats["oversize"] += 1
        for kind_name, n in info["errors"].items():
            errors[kind_name] += n
        errors["ok"] += sum(r.ok for r in info["results"])
        if check and info["results"] and all(not r.ok for r in info["results"]):
            stats["rollback_checked"] += 1
            if env.state_digest() != before:
                stats["rollback_broken"] += 1
    _hash(env, stats, exceptions, examples)
    env.close()
    elapsed = time.perf_counter() - started
    return {
        "env_id": env_id, "calls": calls, "exceptions": sum(exceptions.values()), "exception_types": dict(exceptions),
        "examples": examples, "oversize_observations": stats["oversize"], "longest_observation_chars": longest_obs,
        "slow_steps": stats["slow"], "slowest_step_s": round(slowest, 4), "slowest_action": slowest_action, "failed_calls_checked_for_rollback": stats["rollback_checked"],
        "failed_calls_that_changed_the_world": stats["rollback_broken"], "episodes": stats["episodes"],
        "action_kinds": dict(kinds), "call_outcomes": dict(errors), "seconds": round(elapsed, 1), "steps_per_s": round(calls / elapsed),
    }


def _hash(env: Any, stats: dict[str, int], exceptions: Counter[str], examples: list[str]) -> None:
    try:
        env.state_digest()
    except Exception as exc:
        stats["digest_exceptions"] += 1
        exceptions[f"state_digest: {type(exc).__name__}"] += 1
        if len(examples) < 5:
            examples.append(f"state_digest -> {type(exc).__name__}: {str(exc)[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="steps per environment")
    parser.add_argument("--episode-len", type=int, default=40, help="steps between resets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", nargs="*", default=ENVS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fuzz_step.json")
    args = parser.parse_args()
    results = [fuzz(env_id, args.calls, args.episode_len, args.seed) for env_id in args.envs]
    table = Table(title=f"fuzz_step: {args.calls:,} generated hostile steps per env (seed {args.seed})")
    for column in ("env", "steps", "exceptions", "longest obs", "oversize", "slowest step", "slow", "rollback broken/checked", "steps/s"):
        table.add_column(column, justify="right" if column != "env" else "left")
    for r in results:
        table.add_row(
            r["env_id"], f"{r['calls']:,}", str(r["exceptions"]), f"{r['longest_observation_chars']:,}", str(r["oversize_observations"]),
            f"{r['slowest_step_s']:.3f}s", str(r["slow_steps"]),
            f"{r['failed_calls_that_changed_the_world']}/{r['failed_calls_checked_for_rollback']}", f"{r['steps_per_s']:,}",
        )
    Console(width=160).print(table)
    for r in results:
        for example in r["examples"]:
            Console().print(f"[red]{r['env_id']}[/red] {example}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "tool_timeout_s": TOOL_TIMEOUT_S, "margin_s": MARGIN_S}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
