"""Limits that hold or a refusal that says why: cgroup v1, cgroup v2, and the rlimit fallback.

The issue found the rlimit fallback letting 44 processes run under ``pids=16`` and 96 MiB of
tmpfs under ``memory_mb=32``. Here: this host's hierarchy enforces both (v1 on a v1 host, v2 on
a unified one); a hierarchy that cannot (a cgroup2 mount whose controllers cgroup v1 holds, no
hierarchy at all) is refused with a typed error naming why and the fix; and toolgym started
as an ordinary user, where no cgroup is writable, refuses ``use_cgroups=True`` and otherwise
states its rlimits, which hold for processes and files.
"""

from __future__ import annotations

import json

import pytest

from tests.envs.shell.test_redteam_host import FORK_80, _q
from tests.envs.shell.test_unprivileged_launch import _as_user, ordinary  # noqa: F401 (fixture)
from toolgym.envs.shell.bwrap_backend import BwrapSandbox
from toolgym.envs.shell.cgroups import (
    CgroupLayout,
    LimitsNotEnforced,
    SandboxCgroup,
    _cgroup2_mount,
    detect,
    host_layout,
)
from toolgym.envs.shell.sandbox import SandboxLimits

TIGHT = SandboxLimits(memory_mb=32, pids=16, workspace_mb=64, command_timeout_s=20.0)
FILL = "for p in /workspace /tmp /dev/shm; do head -c 64M /dev/zero > $p/fill 2>/dev/null; done; du -sck /workspace /tmp /dev/shm | tail -n1"


def _used_kib_and_forked(sb) -> tuple[int, int, int]:
    """Fill every writable place, then fork 80 sleepers: (KiB stored, forks that worked, processes alive)."""
    used = int(sb.sync.run(FILL).stdout.split()[0])
    sb.sync.run("rm -f /workspace/fill /tmp/fill /dev/shm/fill")
    forked = int(sb.sync.run(f"python3 -c {_q(FORK_80)}").stdout)
    return used, forked, len(sb.session._tree()) + 1


def test_this_hosts_cgroup_holds_processes_memory_and_files():
    layout = host_layout()
    if isinstance(layout, str):
        pytest.skip(f"no writable cgroup here: {layout}")
    sb = BwrapSandbox(TIGHT, use_cgroups=True)
    sb.sync.start()
    try:
        assert sb.enforcement.startswith(f"cgroup {layout.mode}")
        used, forked, alive = _used_kib_and_forked(sb)
        assert used <= 16 * 1024 + 64  # half of memory_mb, over all places together
        assert forked < 16 and alive <= 16, (forked, alive)
        assert len(sb.cgroup.members()) <= 16
        bomb = sb.sync.run("python3 -c 'b = bytearray(100 * 2**20); print(len(b))'")
        assert bomb.exit_code != 0 and "104857600" not in bomb.stdout
        assert sb.sync.run("echo alive").stdout == "alive\n"  # the limit hit the process, not the sandbox
    finally:
        sb.sync.close()


def test_a_cgroup2_mount_without_the_controllers_is_refused_with_the_reason(tmp_path):
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy is mounted here")
    found = detect(v1_root=tmp_path, v2_parent=mount)  # tmp_path: no cgroup v1 at all
    if isinstance(found, CgroupLayout):
        pytest.skip(f"the cgroup2 hierarchy at {mount} has every controller (the test above runs on it)")
    assert "not all writable" in found and str(mount) in found
    with pytest.raises(LimitsNotEnforced, match="no cgroup can enforce the sandbox limits.*TOOLGYM_CGROUP_PARENT"):
        SandboxCgroup(TIGHT, found)


def test_no_hierarchy_at_all_is_refused(tmp_path):
    found = detect(v1_root=tmp_path, v2_parent=tmp_path / "missing")
    assert isinstance(found, str) and "cannot be read" in found
    with pytest.raises(LimitsNotEnforced, match="delegate a cgroup v2 subtree"):
        SandboxCgroup(TIGHT, found)


ORDINARY = r"""
import json
from toolgym.envs.shell.bwrap_backend import BwrapSandbox
from toolgym.envs.shell.cgroups import LimitsNotEnforced
from toolgym.envs.shell.sandbox import SandboxLimits
from tests.envs.shell.test_cgroups import TIGHT, _used_kib_and_forked
try:
    BwrapSandbox(TIGHT, use_cgroups=True)
    refused = ""
except LimitsNotEnforced as exc:
    refused = str(exc)
sb = BwrapSandbox(TIGHT)
sb.sync.start()
try:
    print(json.dumps({"refused": refused, "enforcement": sb.enforcement, "measured": _used_kib_and_forked(sb)}))
finally:
    sb.sync.close()
"""


def test_an_ordinary_user_is_refused_cgroups_and_told_the_rlimits_that_hold(ordinary):  # noqa: F811
    uid, python, env = ordinary
    done = _as_user(uid, [python, "-c", ORDINARY], env, groups=None, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().split("\n")[-1])
    assert "no cgroup can enforce" in seen["refused"] and "TOOLGYM_CGROUP_PARENT" in seen["refused"]
    assert "rlimits only" in seen["enforcement"] and "PER PROCESS" in seen["enforcement"]
    assert "16 + 1 + 1 MiB" in seen["enforcement"]  # stated exactly as enforced
    used, forked, alive = seen["measured"]
    assert used <= (16 + 1 + 1) * 1024 + 64  # was 96 MiB over three 32 MiB places
    assert forked < 16 and alive <= 16, seen  # was 44 under pids=16
