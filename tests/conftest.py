"""Shared fixtures: small, fast, deterministic."""

from __future__ import annotations

import pytest

import toolgym


@pytest.fixture
def unitconv():
    """A fresh UnitConv environment."""
    env = toolgym.make("toolgym/unitconv-v0")
    yield env
    env.close()
