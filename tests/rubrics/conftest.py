"""Fixtures of the rubric tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, where test modules cannot import their
# neighbours; the shared helpers module is made importable here, once.
sys.path.insert(0, str(Path(__file__).parent))

from toolgym.envs.catalog.unitconv.tasks import generate_task
from toolgym.envs.types import Task


@pytest.fixture
def task() -> Task:
    """A convert_scale task (convert, calculate, store)."""
    for seed in range(100):
        t = generate_task(seed)
        if t.metadata["family"] == "convert_scale":
            return t
    raise RuntimeError("no convert_scale task in 100 seeds")
