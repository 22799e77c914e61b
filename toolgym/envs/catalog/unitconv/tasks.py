"""Seeded task generation for UnitConv: every seed gives one task with its gold solution.

The expected memory is computed here with the same pure functions the tools use
(``convert_value``, arithmetic rounded to ``PRECISION``), independently of the environment,
so a gold replay that reaches ``expected.state_digest`` proves the whole path works.
"""

from __future__ import annotations

import random

from toolgym.envs.catalog.unitconv.units import PRECISION, UNITS, convert_value, format_number
from toolgym.envs.digest import digest
from toolgym.envs.types import Expected, GoldAction, Limits, Task

_SLOTS = ("total", "leg", "result", "answer", "dose", "trip", "batch", "load", "span", "sample")
_DIMS = ("length", "mass", "time", "volume", "speed", "temperature")


def _units(dim: str) -> list[str]:
    return [u for u, (d, _, _) in UNITS.items() if d == dim]


def _pick_pair(rng: random.Random) -> tuple[str, str, str]:
    dim = rng.choice(_DIMS)
    a, b = rng.sample(_units(dim), 2)
    return dim, a, b


def _value(rng: random.Random) -> float:
    return round(rng.uniform(0.5, 500.0), 2)


def _head(rng: random.Random) -> tuple[str, str]:
    family = rng.choice(("convert_store", "convert_scale", "sum_convert", "recall_convert"))
    return family, f"{rng.choice(_SLOTS)}_{rng.randint(1, 99)}"


def task_head(seed: int) -> tuple[str, str]:
    """The family and memory slot of ``generate_task(seed)``, without building the task (cheap filtering)."""
    return _head(random.Random(seed))


def generate_task(seed: int) -> Task:
    """The task for ``seed``: one of four families, with gold actions and expected state."""
    rng = random.Random(seed)
    family, slot = _head(rng)
    memory: dict[str, float] = {}
    gold: list[GoldAction] = []
    _, u1, u2 = _pick_pair(rng)
    v1 = _value(rng)
    if family == "convert_store":
        result = convert_value(v1, u1, u2)
        gold.append(GoldAction(name="convert", arguments={"value": v1, "from_unit": u1, "to_unit": u2}))
        instruction = f"Convert {v1} {u1} to {u2} and store the result in memory as '{slot}'. Tell me the value."
    elif family == "convert_scale":
        k = rng.randint(2, 12)
        converted = convert_value(v1, u1, u2)
        expression = f"{converted} * {k}"
        result = round(converted * k, PRECISION)
        gold.append(GoldAction(name="convert", arguments={"value": v1, "from_unit": u1, "to_unit": u2}))
        gold.append(GoldAction(name="calculate", arguments={"expression": expression}))
        instruction = f"One batch is {v1} {u1}. Express it in {u2}, multiply by {k}, store the total as '{slot}' and report it."
    elif family == "sum_convert":
        dim = UNITS[u1][0]
        u3 = rng.choice(_units(dim))
        v2 = _value(rng)
        a, b = convert_value(v1, u1, u3), convert_value(v2, u2, u3)
        result = round(a + b, PRECISION)
        gold += [
            GoldAction(name="convert", arguments={"value": v1, "from_unit": u1, "to_unit": u3}),
            GoldAction(name="convert", arguments={"value": v2, "from_unit": u2, "to_unit": u3}),
            GoldAction(name="calculate", arguments={"expression": f"{a} + {b}"}),
        ]
        instruction = f"Add {v1} {u1} and {v2} {u2}, express the sum in {u3}, store it as '{slot}' and tell me the number."
    else:
        source = f"reading_{rng.randint(1, 99)}"
        memory[source] = v1
        result = convert_value(v1, u1, u2)
        gold += [
            GoldAction(name="recall", arguments={"name": source}),
            GoldAction(name="convert", arguments={"value": v1, "from_unit": u1, "to_unit": u2}),
        ]
        instruction = f"Memory slot '{source}' holds a value in {u1}. Convert it to {u2}, store it as '{slot}' and report it."
    gold.append(GoldAction(name="store", arguments={"name": slot, "value": result}))
    final_memory = {**memory, slot: round(result, PRECISION)}
    answer = format_number(result)
    return Task(
        id=f"unitconv-{seed}",
        instruction=instruction,
        initial_state={"memory": memory},
        limits=Limits(max_turns=12, max_tool_calls=24),
        gold_actions=gold,
        gold_answer=f"The result is {answer} {u2 if family != 'sum_convert' else gold[1].arguments['to_unit']}; stored as '{slot}'.",
        expected=Expected(state_digest=digest({"memory": final_memory}), outputs=[answer], answer=answer),
        metadata={"family": family, "seed": seed},
    )


def generate_tasks(n: int, seed: int = 0) -> list[Task]:
    """``n`` tasks for seeds ``seed, seed+1, ...``."""
    return [generate_task(seed + i) for i in range(n)]
