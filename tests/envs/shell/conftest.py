"""Fixtures for the shell sandbox tests: which backends this machine has, and host checks."""

from __future__ import annotations

import os
import shutil

import pytest

from toolgym.envs.shell.procs import descendants


def present_backends() -> list:
    """bwrap always (the test fails loudly when it is missing); docker when its backend and dockerd answer."""
    params = [pytest.param("bwrap", id="bwrap")]
    reason = _docker_missing()
    params.append(pytest.param("docker", id="docker", marks=pytest.mark.skipif(reason is not None, reason=reason or "")))
    return params


def _docker_missing() -> str | None:
    if shutil.which("dockerd") is None:
        return "docker.io is not installed (make sandbox-deps installs it)"
    try:
        from toolgym.envs.shell.docker_backend import DEFAULT_IMAGE, docker_client

        docker_client().images.get(DEFAULT_IMAGE)
    except Exception as exc:  # ImportError, SandboxUnavailable, ImageNotFound
        return f"docker backend not usable here: {type(exc).__name__}: {str(exc)[:120]}"
    return None


def own_processes() -> set[int]:
    """Every process descended from this test process."""
    return {pid for pid, _, _ in descendants(os.getpid())}


@pytest.fixture(autouse=True)
def _require_bwrap():
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: run `apt-get install -y bubblewrap` (make sandbox-deps)")
