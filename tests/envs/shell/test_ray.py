"""Shell envs in Ray env actors: the same episodes as in-process, and nothing left when actors die."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from toolgym.envs.shell.cgroups import cgroups_writable, live_dirs, sweep_stale
from toolgym.envs.shell.env import ShellEnv
from toolgym.envs.shell.procs import descendants
from toolgym.envs.types import Expected, GoldAction, Task
from toolgym.rollouts import ScriptedPolicy, run_episodes

ray = pytest.importorskip("ray")
from toolgym.rollouts.ray_pool import RayEnvPool

TASKS = [
    Task(
        id=f"sum-{i}",
        instruction="Add the numbers in nums.txt; write the sum to sum.txt and say it.",
        initial_state={"files": {"nums.txt": "\n".join(str(i * k) for k in range(1, 6)) + "\n"}},
        gold_actions=[
            GoldAction(name="bash", arguments={"command": "paste -sd+ nums.txt | bc > sum.txt 2>/dev/null || awk '{s+=$1} END {print s}' nums.txt > sum.txt"}),
            GoldAction(name="read_file", arguments={"path": "sum.txt"}),
        ],
        gold_answer=str(15 * i),
        expected=Expected(outputs=[str(15 * i)]),
    )
    for i in range(1, 5)
]


def make_env() -> ShellEnv:
    """Module-level so Ray can ship it to the actors."""
    return ShellEnv(tasks=TASKS)


def comparable(episodes):
    return [e.without_timings() for e in episodes]


def our_sandboxes() -> set[int]:
    """bwrap launchers under this process (Ray's raylet and workers are our descendants)."""
    return {pid for pid, _, argv0 in descendants(os.getpid()) if argv0.endswith("bwrap")}


def test_shell_envs_in_ray_actors_match_in_process_and_die_with_them(ray_local):
    before = our_sandboxes()
    local = run_episodes(make_env, ScriptedPolicy.gold(TASKS), tasks=TASKS, seed=3, group_size=2)
    with RayEnvPool(actors=2, num_cpus=0.5) as pool:
        remote = run_episodes(make_env, ScriptedPolicy.gold(TASKS), tasks=TASKS, seed=3, group_size=2, pool=pool)
        in_actors = our_sandboxes() - before
        assert in_actors  # the actors' envs hold live sandboxes
    assert comparable(remote) == comparable(local)
    assert all(e.reward == 1.0 for e in remote)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in in_actors) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in in_actors if Path(f"/proc/{pid}").exists()], "sandboxes outlived their killed Ray actors"
    if cgroups_writable():  # the dead actors' cgroup dirs go at the next sweep (every process's first start)
        sweep_stale()
        assert all(Path(f"/proc/{d.name.split('-')[0]}").exists() for d in live_dirs())
