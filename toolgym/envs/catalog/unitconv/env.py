"""UnitConv: a calculator and unit-conversion API with a small named memory.

The world is ``{"memory": {name: number}}``. Tasks ask for conversions and arithmetic and for
results to be stored under given names, so a correct episode ends in a known memory state.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from toolgym.envs.catalog.unitconv.calc import evaluate
from toolgym.envs.catalog.unitconv.tasks import generate_task
from toolgym.envs.catalog.unitconv.units import DIMENSIONS, PRECISION, UNITS, convert_value
from toolgym.envs.env import ToolEnv
from toolgym.envs.tools import tool
from toolgym.envs.types import Task
from toolgym.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_SLOTS = 32

SYSTEM_PROMPT = (
    "You are a precise lab assistant with a unit converter, a calculator and a named memory. "
    "Use the tools for every conversion and calculation, store results exactly under the names "
    "the user gives, then answer with the final number."
)


class UnitConvEnv(ToolEnv):
    """Unit conversions, arithmetic and a named memory; tasks generated from the seed."""

    system_prompt = SYSTEM_PROMPT
    sync_tools_inline = True  # arithmetic on floats and a small dict: no worker thread on an event loop

    def setup(self, task: Task) -> None:
        """The world is the task's memory; a task whose memory is not names to numbers is refused.

        Raises:
            ConfigError: naming the bad field, before the episode starts (not an env_error later).
        """
        unknown = sorted(set(task.initial_state) - {"memory"})
        if unknown:
            raise ConfigError(f"task {task.id!r}: initial_state.{unknown[0]} is not a unitconv field; the only field is 'memory'")
        memory = task.initial_state.get("memory", {})
        if not isinstance(memory, dict):
            raise ConfigError(f"task {task.id!r}: initial_state.memory must map names to numbers, got {type(memory).__name__}")
        for name, value in memory.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(
                    f"task {task.id!r}: initial_state.memory.{name} must be a number, got {type(value).__name__} {str(value)[:40]!r}"
                )
        self.world = {"memory": {str(k): float(v) for k, v in memory.items()}}

    def save_world(self) -> dict[str, Any]:
        """A copy for rollbacks and snapshots: memory holds only floats, so copying its one dict
        is a deep copy (the generic copy walks the world before every writing call)."""
        return {"memory": dict(self.world["memory"])}

    def sample_task(self, rng: np.random.Generator) -> Task:
        if self.tasks:
            return super().sample_task(rng)
        return generate_task(int(rng.integers(2**31)))

    @tool(read_only=True)
    def convert(self, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
        """Convert a quantity from one unit to another of the same dimension.

        Args:
            value: The quantity to convert.
            from_unit: Unit of ``value``, for example "mi", "kg", "C", "km/h".
            to_unit: Unit to express the quantity in.
        """
        if not math.isfinite(value):  # NaN or infinity has no unit and no JSON form
            raise ValueError(f"value must be a finite number, got {value}")
        return {"value": convert_value(value, from_unit, to_unit), "unit": to_unit}

    @tool(read_only=True)
    def calculate(self, expression: str) -> float:
        """Evaluate an arithmetic expression (numbers, + - * / ** %, sqrt, round, min, max).

        Args:
            expression: For example "12.5 * 3 + 1".
        """
        return evaluate(expression)

    @tool
    def store(self, name: str, value: float) -> str:
        """Save a number in memory under a name, replacing any earlier value.

        Args:
            name: Lower-case slot name (letters, digits, underscores).
            value: The number to keep.
        """
        if not _NAME.match(name):
            raise ValueError(f"invalid slot name {name!r}: use lower-case letters, digits and underscores")
        memory = self.world["memory"]
        if name not in memory and len(memory) >= MAX_SLOTS:
            raise ValueError(f"memory is full ({MAX_SLOTS} slots); delete one first")
        memory[name] = round(float(value), PRECISION)
        return f"stored {name} = {memory[name]}"

    @tool(read_only=True)
    def recall(self, name: str) -> float:
        """Read a number from memory.

        Args:
            name: The slot to read.
        """
        memory = self.world["memory"]
        if name not in memory:
            known = ", ".join(sorted(memory)) or "memory is empty"
            raise KeyError(f"no slot {name!r} ({known})")
        return memory[name]

    @tool
    def delete(self, name: str) -> str:
        """Remove a slot from memory.

        Args:
            name: The slot to remove.
        """
        if self.world["memory"].pop(name, None) is None:
            raise KeyError(f"no slot {name!r}")
        return f"deleted {name}"

    @tool(read_only=True)
    def list_units(self, dimension: str | None = None) -> dict[str, list[str]]:
        """List the known units, grouped by dimension.

        Args:
            dimension: Only this dimension (one of length, mass, time, volume, speed, temperature).
        """
        if dimension is not None and dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; known: {', '.join(DIMENSIONS)}")
        groups: dict[str, list[str]] = {}
        for unit, (dim, _, _) in UNITS.items():
            if dimension in (None, dim):
                groups.setdefault(dim, []).append(unit)
        return groups
