"""What ``trusted()`` saves over pydantic's public constructors, per model and per env step.

``toolgym.envs.types.trusted`` builds models the library produced itself by writing pydantic's
four instance slots directly. This times, per construction (best of ``--repeats`` batches),
``trusted`` against the public ``model_construct`` (with and without ``_fields_set``) and full
validation, for each model class the library builds that way; then one UnitConv ``step`` with
the library as shipped against the same step with every ``trusted`` call routed to
``model_construct``. ``tests/envs/test_trusted_guard.py`` keeps the shortcut honest across
pydantic versions.

    python benchmarks/trusted_construction.py   # table + benchmarks/results/trusted_construction.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.envs import dispatch, types
from toolgym.envs import env as env_module
from toolgym.envs.formats import base as formats_base
from toolgym.envs.types import AssistantMessage, Limits, Observation, ToolCall, ToolMessage, ToolResult
from toolgym.rollouts import sample_tasks

CALL = ToolCall(id="a", name="convert", arguments={"value": 12.5, "from_unit": "mi", "to_unit": "km"})
SAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    ToolCall: {"id": "a", "name": "convert", "arguments": {"value": 12.5, "from_unit": "mi", "to_unit": "km"}},
    ToolResult: {"call_id": "a", "name": "convert", "output": {"value": 20.1168}, "error": None, "truncated": False},
    ToolMessage: {"role": "tool", "tool_call_id": "a", "name": "convert", "content": '{"value":20.1168}', "error": None},
    AssistantMessage: {"role": "assistant", "content": "", "tool_calls": [CALL], "raw": "<tool_call>...</tool_call>"},
    Observation: {"messages": [], "tools": []},
}
USERS = (dispatch, env_module, formats_base)  # modules that imported ``trusted`` by name


def best_ns(fn: Callable[[], Any], batch: int, repeats: int) -> float:
    """Best mean time per call over ``repeats`` batches of ``batch`` calls (ns)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / batch)
    return best


def via_model_construct(cls: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The public alternative to ``trusted``."""
    return cls.model_construct(_fields_set=set(data), **data)


def constructions(batch: int, repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for cls, data in SAMPLES.items():
        out[cls.__name__] = {
            # trusted() adopts the dict it is given; sharing one across timed calls is harmless here
            "trusted_ns": best_ns(lambda: types.trusted(cls, data), batch, repeats),  # noqa: B023 - timed now
            "model_construct_ns": best_ns(lambda: cls.model_construct(**data), batch, repeats),  # noqa: B023
            "model_construct_fields_set_ns": best_ns(lambda: via_model_construct(cls, data), batch, repeats),  # noqa: B023
            "validated_ns": best_ns(lambda: cls(**data), batch, repeats),  # noqa: B023
        }
    return out


def steps(batch: int, repeats: int) -> dict[str, float]:
    """Best time per UnitConv step with each constructor behind ``trusted``; the variants take
    turns batch by batch, so load drifting on a shared machine hits them alike."""
    env = toolgym.make("toolgym/unitconv-v0")
    text = env.unwrapped.format.render_turn("", [CALL])
    task = sample_tasks("toolgym/unitconv-v0", 1, seed=0)[0].model_copy(update={"limits": Limits(max_turns=10**9, max_tool_calls=10**9)})
    env.reset(seed=0, options={"task": task})
    variants = {"trusted": types.trusted, "model_construct": via_model_construct, "validated": validated}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for name, make in variants.items():
            for module in USERS:
                module.trusted = make  # type: ignore[attr-defined]  # timing the alternatives
            try:
                best[name] = min(best[name], best_ns(lambda: env.step(text), batch, 1))
            finally:
                for module in USERS:
                    module.trusted = types.trusted  # type: ignore[attr-defined]
    return {f"step_{name}_ns": ns for name, ns in best.items()}


def validated(cls: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """Full validation, as for outside input."""
    return cls(**data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=20_000, help="constructions per timed batch (steps: a tenth)")
    parser.add_argument("--repeats", type=int, default=7, help="batches; the best is reported")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "trusted_construction.json")
    args = parser.parse_args()

    per_model = constructions(args.batch, args.repeats)
    per_step = steps(args.batch // 10, args.repeats)
    table = Table(title=f"trusted() vs public constructors, µs, best of {args.repeats} (pydantic {pydantic.VERSION})")
    for col in ("model", "trusted", "model_construct", "model_construct(_fields_set)", "validated"):
        table.add_column(col, justify="right")
    for name, r in per_model.items():
        table.add_row(name, *(f"{r[k] / 1e3:.2f}" for k in ("trusted_ns", "model_construct_ns", "model_construct_fields_set_ns", "validated_ns")))
    base = per_step["step_trusted_ns"]
    slower = {k: per_step[f"step_{k}_ns"] / base - 1 for k in ("model_construct", "validated")}
    table.add_row("UnitConv step", f"{base / 1e3:.2f}", "", f"{per_step['step_model_construct_ns'] / 1e3:.2f} ({slower['model_construct']:+.0%})",
                  f"{per_step['step_validated_ns'] / 1e3:.2f} ({slower['validated']:+.0%})")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"python": platform.python_version(), "pydantic": pydantic.VERSION, "batch": args.batch, "repeats": args.repeats,
              "per_model": per_model, "per_step": per_step, "step_slowdown": slower}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
