"""The cluster-job example runs under `ray job submit` against a head node started here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.dashboard")  # job submission needs ray[default]

EXAMPLE = Path(__file__).parents[2] / "examples" / "04_ray_cluster_job.py"
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline_s: float, head: subprocess.Popen | None = None) -> None:
    """Return once something listens on ``port``; raise early if ``head`` exits first."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if head is not None and head.poll() is not None:
            raise TimeoutError(f"the head process exited with code {head.returncode} before 127.0.0.1:{port} listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {deadline_s:g}s")


def stop_group(head: subprocess.Popen) -> None:
    """Stop the head and every process it started (its process group), nothing else."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)  # stragglers (raylet workers) of this group only
    except ProcessLookupError:
        pass
    head.wait(timeout=10)


def start_head(temp: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """``ray start --head`` in its own process group, every port a free one; returns (process, dashboard port)."""
    gcs, dashboard = free_port(), free_port()
    # Every fixed default port gets a free one, so a Ray instance already on this machine (the
    # session's ray.init, another job) cannot keep this head's agents from starting.
    ports = [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
        "node-manager-port", "object-manager-port", "ray-client-server-port")]
    with log.open("ab") as sink:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=true", *ports],
            env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return head, dashboard


@pytest.fixture
def head_node():
    """A Ray head node in its own process group and temp dir; stopped (that group only) after.

    Starting a head is infrastructure, not what this test checks: a start that does not come up
    (a port taken between picking and binding it, a slow dashboard on a loaded machine) is
    stopped and tried once more on fresh ports, and a second failure shows the head's log.
    """
    temps: list[str] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    # Ray 2.60 clusters require a token: give this head (and the job clients) their own.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    head = None
    try:
        for attempt in (1, 2):
            temps.append(tempfile.mkdtemp(prefix="tgray"))  # short: Ray's socket paths must fit in 107 bytes
            log = Path(temps[-1]) / "head.log"
            head, dashboard = start_head(temps[-1], env, log)
            try:
                wait_for_port(dashboard, 90, head)
                break
            except TimeoutError as exc:
                stop_group(head)
                head = None
                if attempt == 2:
                    raise TimeoutError(f"{exc}; head log:\n{log.read_text(errors='replace')[-4000:]}") from exc
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        if head is not None:
            stop_group(head)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def test_example_job_succeeds_on_a_local_head_node(head_node, tmp_path):
    address, env = head_node
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    out = tmp_path / "episodes.jsonl"
    job_id = f"toolgym-test-{os.getpid()}"
    command = [RAY, "job", "submit", "--address", address, "--submission-id", job_id, "--working-dir", str(work), "--",
               sys.executable, EXAMPLE.name, "--episodes", "60", "--out", str(out)]
    deadline = time.monotonic() + 90
    while True:  # the dashboard answers before the node's job agent is up: retry that, nothing else
        submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        if "No available agent to submit job" not in submit.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    status = subprocess.run([RAY, "job", "status", "--address", address, job_id], env=env, capture_output=True, text=True, timeout=60)
    assert "succeeded" in (status.stdout + status.stderr).lower(), submit.stdout[-3000:] + submit.stderr[-3000:]
    summary = json.loads([line for line in submit.stdout.splitlines() if line.startswith('{"episodes"')][-1])
    assert summary["episodes"] == 60 == summary["reached_expected_state"]
    assert len(summary["actor_pids"]) == 2
    assert len(out.read_text().splitlines()) == 60
