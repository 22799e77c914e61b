"""Nothing leaks: processes, zombies, mounts, cgroup directories, temp directories, counted."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from toolgym.envs.shell import make_sandbox
from toolgym.envs.shell.cgroups import cgroups_writable, live_dirs, sweep_stale
from toolgym.envs.shell.env import ShellEnv
from toolgym.envs.shell.procs import descendants, zombies_of
from toolgym.envs.types import Task

TASK = Task(id="leak", instruction="touch things", initial_state={"files": {"a.txt": "a\n"}})
BASH = '<tool_call>{"name": "bash", "arguments": {"command": "echo $RANDOM > b.txt; sleep 1000 &"}}</tool_call>'


def counts() -> dict[str, int]:
    """What a leak would grow: our processes and zombies, mounts, cgroup dirs, our temp dirs."""
    return {
        "processes": len(descendants(os.getpid())),
        "zombies": zombies_of(os.getpid()),
        # Other jobs (dockerd) mount and unmount on this host meanwhile: count the mounts a
        # sandbox could have leaked into the host namespace (bwrap's or ours by name).
        "mounts": sum(("bwrap" in line or "toolgym" in line) for line in Path("/proc/self/mountinfo").read_text().splitlines()),
        "cgroups": len([d for d in live_dirs() if d.name.startswith(f"{os.getpid()}-")]),
        "tempdirs": len([p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("toolgym-local-")]),
    }


def run_episodes(n: int, n_envs: int = 8) -> None:
    """``n`` short episodes over ``n_envs`` envs stepped from threads (their sandboxes share one runtime)."""
    before = counts()
    envs = [ShellEnv(tasks=[TASK]) for _ in range(n_envs)]

    def play(env: ShellEnv, episodes: range) -> None:
        for episode in episodes:
            env.reset(seed=episode)
            env.step(BASH)  # leaves a background job for the next reset to clean up

    with concurrent.futures.ThreadPoolExecutor(n_envs) as threads:
        list(threads.map(play, envs, [range(i, n, n_envs) for i in range(n_envs)]))
    during = counts()
    # per env: bwrap, its pid 1, the sh loop, bash, and the last episode's background job
    assert during["processes"] <= before["processes"] + n_envs * 5, during
    for env in envs:
        env.close()
    time.sleep(0.05)
    assert counts() == before


def test_nothing_leaks_after_1000_episodes():
    run_episodes(1000)


def test_local_backend_removes_its_temp_dir():
    before = counts()
    sb = make_sandbox("local")
    sb.sync.start()
    sb.sync.run("sleep 1000 &")
    sb.sync.close()
    assert counts() == before


def test_nothing_leaks_after_the_owner_is_killed():
    script = textwrap.dedent(
        """
        import os, signal
        from toolgym.envs.shell import make_sandbox
        boxes = [make_sandbox("bwrap") for _ in range(3)]
        for b in boxes:
            b.sync.start(); b.sync.run("sleep 1000 & (setsid sleep 1001 &)")
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    owner = int(proc.stdout.split()[0])
    time.sleep(0.3)
    survivors = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _cmdline(pid).startswith("sleep 100")]
    assert survivors == [], "sandbox processes outlived their killed owner"
    if cgroups_writable():
        sweep_stale()  # what the next sandbox start does
        assert [d for d in live_dirs() if d.name.startswith(f"{owner}-")] == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
