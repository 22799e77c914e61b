"""Per-sandbox cgroup v1 directories (memory, pids, cpu); the rlimit fallback is in ``bwrap_setup``.

bwrap sets no resource limits of its own. As root on a cgroup v1 host, a sandbox gets a
directory ``/sys/fs/cgroup/<controller>/toolgym/<owner pid>-<n>`` per controller, the limits
written into it, and the launcher's pid moved in before it execs bwrap (so every process of the
sandbox is inside). ``remove`` deletes the directories; ``sweep_stale`` deletes those left by a
process that died without closing its sandboxes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

from toolgym.aio import loop_needed, run_sync
from toolgym.envs.shell.sandbox import SandboxLimits

ROOT = Path("/sys/fs/cgroup")
PARENT = "toolgym"
CONTROLLERS = ("memory", "pids", "cpu")
_COUNTER = itertools.count()


def cgroups_writable() -> bool:
    """True when every controller we need is a writable cgroup v1 hierarchy."""
    return all((ROOT / c / "tasks").exists() and os.access(ROOT / c, os.W_OK) for c in CONTROLLERS)


def _limit_files(limits: SandboxLimits) -> dict[str, dict[str, str]]:
    mem = str(limits.memory_mb * 2**20)
    return {
        "memory": {"memory.limit_in_bytes": mem, "memory.memsw.limit_in_bytes": mem, "memory.swappiness": "0"},
        "pids": {"pids.max": str(limits.pids)},
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(limits.cpu_quota * 100000))},
    }


class SandboxCgroup:
    """The cgroup directories of one sandbox (created by ``create``, deleted by ``remove``)."""

    def __init__(self, limits: SandboxLimits):
        self.name = f"{os.getpid()}-{next(_COUNTER)}"
        self.dirs = [ROOT / c / PARENT / self.name for c in CONTROLLERS]
        self.limits = limits

    def create(self) -> None:
        """Make the directories and write the limits (optional files, e.g. memsw, may be absent)."""
        files = _limit_files(self.limits)
        for controller, path in zip(CONTROLLERS, self.dirs, strict=True):
            path.mkdir(parents=True, exist_ok=True)
            for name, value in files[controller].items():
                try:
                    (path / name).write_text(value)
                except OSError:
                    if name in ("memory.limit_in_bytes", "pids.max", "cpu.cfs_quota_us"):
                        raise

    def enter_fn(self) -> Callable[[], None]:
        """A ``preexec_fn`` that moves the child into the cgroups (no allocation-heavy work)."""
        tasks = [str(d / "tasks").encode() for d in self.dirs]

        def enter() -> None:
            pid = str(os.getpid()).encode()
            for path in tasks:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return enter

    def members(self) -> list[int]:
        """Pids of every process in the sandbox (from the pids controller)."""
        return [int(p) for p in (self.dirs[1] / "cgroup.procs").read_text().split()]

    def remove(self, wait_s: float = 5.0) -> bool:
        """``aremove`` from sync code."""
        return run_sync(self.aremove(wait_s))

    async def aremove(self, wait_s: float = 5.0) -> bool:
        """Delete the directories once empty (their processes take a moment to vanish); waits
        with ``asyncio.sleep``, so the runtime loop serves other sandboxes meanwhile."""
        deadline = time.monotonic() + wait_s
        while not _rmdirs(self.dirs, 0.0):
            if time.monotonic() > deadline:
                return False
            await loop_needed()
            await asyncio.sleep(0.01)
        return True


def _rmdirs(dirs: list[Path], wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    left = [d for d in dirs if d.exists()]
    while left:
        for d in list(left):
            try:
                d.rmdir()
                left.remove(d)
            except FileNotFoundError:
                left.remove(d)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return not left


def live_dirs() -> list[Path]:
    """Every sandbox cgroup directory on the host (for leak counting)."""
    out: list[Path] = []
    for controller in CONTROLLERS:
        parent = ROOT / controller / PARENT
        if parent.is_dir():
            out.extend(p for p in parent.iterdir() if p.is_dir())
    return out


def sweep_stale() -> int:
    """Remove sandbox cgroups whose owning process is gone. Returns how many were removed."""
    stale = [d for d in live_dirs() if not _alive(int(d.name.split("-", 1)[0]))]
    for d in stale:
        try:
            pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    _rmdirs(stale, 2.0)
    return len(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
