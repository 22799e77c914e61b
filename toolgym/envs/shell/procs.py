"""Host-side process bookkeeping from ``/proc``: a process's descendants, killing them, counting."""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Iterable


def _ppid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def _argv0(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return ""


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids for every process on the host."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            ppid = _ppid(name)
            if ppid is not None:
                out.setdefault(ppid, []).append(int(name))
    return out


def descendants(root: int, tree: dict[int, list[int]] | None = None) -> list[tuple[int, int, str]]:
    """(pid, ppid, argv[0]) of every descendant of ``root`` (not ``root`` itself), parents first."""
    tree = children_map() if tree is None else tree
    out: list[tuple[int, int, str]] = []
    todo = collections.deque([root])
    while todo:
        parent = todo.popleft()
        for child in tree.get(parent, []):
            out.append((child, parent, _argv0(child)))
            todo.append(child)
    return out


def tree_of(root: int, pids: Iterable[int]) -> list[tuple[int, int, str]]:
    """Like ``descendants`` but only among ``pids`` (e.g. a cgroup's members): no /proc scan."""
    tree: dict[int, list[int]] = {}
    for pid in pids:
        ppid = _ppid(str(pid))
        if ppid is not None:
            tree.setdefault(ppid, []).append(pid)
    return descendants(root, tree)


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each pid, ignoring those already gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def zombies_of(root: int) -> int:
    """Zombie children of ``root`` (a leak when ``root`` is this process)."""
    count = 0
    for pid in children_map().get(root, []):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2:].split()[:1] == [b"Z"]:
            count += 1
    return count
