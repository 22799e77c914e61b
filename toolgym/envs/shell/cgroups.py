"""Per-sandbox cgroups (cgroup v1 or v2) for memory, pids and CPU; the rlimit fallback is in ``bwrap_setup``.

bwrap sets no resource limits of its own. ``detect`` finds a hierarchy toolgym may write:

* **cgroup v1** (root on a v1 host): a directory ``/sys/fs/cgroup/<controller>/toolgym/<owner
  pid>-<n>`` per controller (``memory``, ``pids``, ``cpu``);
* **cgroup v2** (a unified hierarchy with the ``memory``, ``pids`` and ``cpu`` controllers):
  one directory ``<parent>/toolgym/<owner pid>-<n>``, where ``<parent>`` is the cgroup2 mount
  (root on a v2 host) or a delegated subtree named by ``TOOLGYM_CGROUP_PARENT`` (an ordinary
  user's, e.g. from ``systemd-run --user --scope -p Delegate=yes``); the controllers are enabled
  in ``cgroup.subtree_control`` on the way down.

The limits are written, then read back (a value that did not stick raises ``LimitsNotEnforced``),
and the launcher's pid is moved in before it execs bwrap (so every process of the sandbox is
inside). ``remove`` deletes the directories; ``sweep_stale`` deletes those left by a process
that died without closing its sandboxes. Where no hierarchy is writable ``detect`` says why,
in words, so a caller can refuse (``BwrapSandbox(use_cgroups=True)``) or state the weaker
rlimit guarantee.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolgym.aio import loop_needed, run_sync
from toolgym.envs.shell.sandbox import SandboxLimits, SandboxUnavailable

ROOT = Path("/sys/fs/cgroup")
PARENT = "toolgym"
CONTROLLERS = ("memory", "pids", "cpu")
PARENT_ENV = "TOOLGYM_CGROUP_PARENT"
"""Environment variable naming a delegated cgroup v2 directory to create sandbox cgroups under."""
FIX = (
    "run toolgym as root on a cgroup v1 or v2 host, or delegate a cgroup v2 subtree with the memory, "
    f"pids and cpu controllers (e.g. `systemd-run --user --scope -p Delegate=yes bash`) and set {PARENT_ENV} to its directory"
)
_COUNTER = itertools.count()


class LimitsNotEnforced(SandboxUnavailable):
    """The sandbox's limits cannot be enforced by a cgroup here (no writable hierarchy, or a
    limit did not stick); the message says why and how to fix it."""


@dataclass(frozen=True)
class CgroupLayout:
    """Where the sandbox cgroups of this process go."""

    mode: Literal["v1", "v2"]
    parents: tuple[Path, ...]
    """v1: one ``toolgym`` directory per controller (memory, pids, cpu); v2: the one ``toolgym`` directory."""

    @property
    def enter_file(self) -> str:
        """The file a pid is written into to move that process in."""
        return "tasks" if self.mode == "v1" else "cgroup.procs"

    def describe(self) -> str:
        """In words, for ``BwrapSandbox.enforcement``."""
        where = "" if self.mode == "v1" else f" under {self.parents[0]}"
        return f"cgroup {self.mode} (memory, pids, cpu){where}"


def detect(v1_root: Path = ROOT, v2_parent: Path | None = None) -> CgroupLayout | str:
    """The hierarchy sandbox cgroups go to, or why there is none (a sentence).

    v1 first (where all three controllers are writable), then v2: ``v2_parent``, else
    ``$TOOLGYM_CGROUP_PARENT``, else the cgroup2 mount. The v2 parent gets the controllers
    enabled for its children (``+memory +pids +cpu``), which fails where it holds processes of
    its own (a container's cgroup namespace root): then delegate a subtree.
    """
    if all((v1_root / c / "tasks").exists() and os.access(v1_root / c, os.W_OK) for c in CONTROLLERS):
        return CgroupLayout("v1", tuple(v1_root / c / PARENT for c in CONTROLLERS))
    why_v1 = f"cgroup v1 controllers {', '.join(CONTROLLERS)} are not all writable under {v1_root}"
    parent = v2_parent or (Path(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else _cgroup2_mount())
    if parent is None:
        return f"{why_v1}, and no cgroup2 hierarchy is mounted"
    why_v2 = _prepare_v2(parent)
    if why_v2:
        return f"{why_v1}, and {why_v2}"
    return CgroupLayout("v2", (parent / PARENT,))


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                fields = line.split()
                if " - cgroup2 " in line:
                    return Path(fields[4])
    except OSError:
        pass
    return None


def _prepare_v2(parent: Path) -> str:
    """Enable the controllers down to ``parent/toolgym``; '' when done, else why not."""
    try:
        have = set((parent / "cgroup.controllers").read_text().split())
    except OSError as exc:
        return f"the cgroup v2 directory {parent} cannot be read ({exc.strerror})"
    missing = [c for c in CONTROLLERS if c not in have]
    if missing:
        return f"the cgroup v2 hierarchy at {parent} lacks the {', '.join(missing)} controller(s) (held by cgroup v1 here)"
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    try:
        _enable(parent, enable)
        (parent / PARENT).mkdir(exist_ok=True)
        _enable(parent / PARENT, enable)
    except OSError as exc:
        return f"the cgroup v2 directory {parent} is not writable for sandboxes ({exc.strerror}; a cgroup holding processes cannot enable controllers for children)"
    return ""


def _enable(directory: Path, enable: str) -> None:
    if set(enable.replace("+", "").split()) <= set((directory / "cgroup.subtree_control").read_text().split()):
        return
    (directory / "cgroup.subtree_control").write_text(enable)


@functools.cache
def host_layout() -> CgroupLayout | str:
    """``detect()`` once per process (the host's hierarchy does not change under it)."""
    return detect()


def cgroups_writable() -> bool:
    """True when sandbox cgroups (v1 or v2) can be made here."""
    return isinstance(host_layout(), CgroupLayout)


def _limit_files(limits: SandboxLimits, mode: str) -> list[tuple[int, str, str, bool]]:
    """(parent index, file, value, required) for every limit of ``mode``."""
    mem = str(limits.memory_mb * 2**20)
    if mode == "v2":
        return [
            (0, "memory.max", mem, True), (0, "memory.swap.max", "0", False),
            (0, "pids.max", str(limits.pids), True), (0, "cpu.max", f"{int(limits.cpu_quota * 100000)} 100000", True),
        ]
    return [
        (0, "memory.limit_in_bytes", mem, True), (0, "memory.memsw.limit_in_bytes", mem, False), (0, "memory.swappiness", "0", False),
        (1, "pids.max", str(limits.pids), True),
        (2, "cpu.cfs_period_us", "100000", False), (2, "cpu.cfs_quota_us", str(int(limits.cpu_quota * 100000)), True),
    ]


class SandboxCgroup:
    """The cgroup directories of one sandbox (created by ``create``, deleted by ``remove``).

    Args:
        limits: What to write into them.
        layout: The hierarchy, or why there is none (default: this host's, ``host_layout()``).

    Raises:
        LimitsNotEnforced: no hierarchy is writable here (the message says why and the fix).
    """

    def __init__(self, limits: SandboxLimits, layout: CgroupLayout | str | None = None):
        found = host_layout() if layout is None else layout
        if isinstance(found, str):
            raise LimitsNotEnforced(f"no cgroup can enforce the sandbox limits: {found}; {FIX}")
        self.layout = found
        self.name = f"{os.getpid()}-{next(_COUNTER)}"
        self.dirs = [parent / self.name for parent in found.parents]
        self.limits = limits

    def create(self) -> None:
        """Make the directories, write the limits and read the required ones back.

        Raises:
            LimitsNotEnforced: a required limit could not be written or did not stick.
        """
        for path in self.dirs:
            path.mkdir(parents=True, exist_ok=True)
        for index, name, value, required in _limit_files(self.limits, self.layout.mode):
            target = self.dirs[index] / name
            try:
                target.write_text(value)
                stuck = target.read_text().split()[:1] == value.split()[:1]
            except OSError as exc:
                if not required:
                    continue  # optional files (memsw without swap accounting, swap.max) may be absent
                raise LimitsNotEnforced(f"could not write {value!r} to {target}: {exc.strerror}; {FIX}") from exc
            if required and not stuck:
                raise LimitsNotEnforced(f"{target} reads {target.read_text().strip()!r} after writing {value!r}; {FIX}")

    def enter_fn(self) -> Callable[[], None]:
        """A ``preexec_fn`` that moves the child into the cgroups (no allocation-heavy work)."""
        targets = [str(d / self.layout.enter_file).encode() for d in self.dirs]

        def enter() -> None:
            pid = str(os.getpid()).encode()
            for path in targets:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return enter

    def members(self) -> list[int]:
        """Pids of every process in the sandbox (v1: from the pids controller)."""
        pids_dir = self.dirs[CONTROLLERS.index("pids")] if self.layout.mode == "v1" else self.dirs[0]
        return [int(p) for p in (pids_dir / "cgroup.procs").read_text().split()]

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
    """Every sandbox cgroup directory of this host's hierarchy (for leak counting)."""
    layout = host_layout()
    out: list[Path] = []
    for parent in layout.parents if isinstance(layout, CgroupLayout) else ():
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
