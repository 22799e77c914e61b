"""`ray job submit` of the example RL-system config against a local head node."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.dashboard")  # job submission needs ray[default]

ROOT = Path(__file__).parents[3]
CONFIG = ROOT / "examples" / "configs" / "grpo_ray_async.yaml"
_spec = importlib.util.spec_from_file_location("ray_head", ROOT / "tests" / "rollouts" / "test_ray_cluster_job.py")
assert _spec is not None and _spec.loader is not None
_head = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_head)
head_node = _head.head_node  # the robust head start of the cluster-job test (fresh ports, one retry)
RAY = _head.RAY

pytestmark = pytest.mark.slow


def test_the_async_example_trains_as_a_ray_job(head_node, tmp_path):
    address, env = head_node
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(CONFIG, work / CONFIG.name)
    out = tmp_path / "run"
    job_id = f"toolgym-train-{os.getpid()}"
    toolgym = str(Path(sys.executable).parent / "toolgym")
    command = [RAY, "job", "submit", "--address", address, "--submission-id", job_id, "--working-dir", str(work), "--",
               toolgym, "train", CONFIG.name, "--iterations", "1", "--out", str(out)]
    deadline = time.monotonic() + 90
    while True:  # the dashboard answers before the node's job agent is up: retry that, nothing else
        submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in submit.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    status = subprocess.run([RAY, "job", "status", "--address", address, job_id], env=env, capture_output=True, text=True, timeout=60)
    assert "succeeded" in (status.stdout + status.stderr).lower(), submit.stdout[-3000:] + submit.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "system/policy_version" in r]
    assert len(trained) == 1 and trained[0]["system/policy_version"] == 0
    # 16 episodes started: trained in whole groups, or paused at the partial-rollout turn budget (or waiting for siblings).
    assert trained[0]["train/episodes"] + trained[0]["system/paused_episodes"] == 16
    assert (out / "checkpoints" / "latest").is_file()
