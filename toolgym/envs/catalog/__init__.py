"""Shipped environments, one folder each. Registering them imports nothing heavy."""

from __future__ import annotations

from toolgym.envs.registry import register


def register_catalog() -> None:
    """Register every shipped environment (called by ``import toolgym``)."""
    register(
        "toolgym/unitconv-v0",
        "toolgym.envs.catalog.unitconv.env:UnitConvEnv",
        description="Unit conversion, arithmetic and a named memory; seeded tasks with gold solutions.",
    )
