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


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for every Ray test of the session (start-up costs seconds)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield


@pytest.fixture(scope="session")
def vllm_tier(request):
    """Skip unless the vLLM tier was asked for (``-m vllm``) and ``make vllm-venv`` has run."""
    if "vllm" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the vLLM tier runs only when asked for: make test-vllm (pytest -m vllm)")
    from toolgym.policies.vllm_engine import VLLMNotInstalledError, vllm_python

    try:
        vllm_python()
    except VLLMNotInstalledError as exc:
        pytest.skip(str(exc))
