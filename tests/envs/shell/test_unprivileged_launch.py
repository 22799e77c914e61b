"""Privilege with toolgym started as an ordinary user (the other red-team tests run it as root).

The test (root only) starts a second Python process as ``nobody`` with ``setpriv`` (no
capabilities, no groups) and runs the same probes there: the host uid of every sandbox process,
the sandbox's uid map read from the host, and an attempt to open every host-global kernel
setting for writing. bwrap then runs as ``nobody`` itself, through an unprivileged user
namespace. Docker cannot be used by an ordinary user without the docker socket's group, which
is root-equivalent on the host (anyone who can talk to dockerd can start a privileged
container); the docker case therefore runs as ``nobody`` in that group only, and its guarantee
comes from dockerd's ``--userns-remap``, whoever starts toolgym.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envs.shell.conftest import present_backends
from tests.envs.shell.test_redteam_host import NAMESPACED, PROBE_WRITE

REPO = Path(__file__).resolve().parents[3]
PROBE = r"""
import json, os, sys
from toolgym.envs.shell import make_sandbox

def host_pids(sb):
    # The first pid is inside the sandbox's user namespace (bwrap's own process is not).
    if sb.backend == "bwrap":
        return [sb.session.loop_pid] + [pid for pid, _, _ in sb.session._tree()] + [sb.session.pid]
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cgroup") as handle:
                if sb.container.id in handle.read():
                    out.append(int(entry))
        except OSError:
            pass
    return out

def ids(pid):
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return [int(x) for key in ("Uid", "Gid") for x in fields[key].split()]

sb = make_sandbox(sys.argv[1], {"memory_mb": 128, "pids": 48, "workspace_mb": 16, "output_bytes": 65536})
sb.sync.start()
try:
    sb.sync.run("sleep 30 & (sleep 30 &); true")
    pids = [p for p in host_pids(sb) if os.path.exists(f"/proc/{p}")]
    with open(f"/proc/{pids[0]}/uid_map") as handle:  # read from the host: outside ids in its terms
        uid_map = handle.read().split()
    probe = sb.sync.run("python3 -c " + "'" + sys.argv[2].replace("'", "'\\''") + "'")
    core = sb.sync.run("echo '|/workspace/x' > /proc/sys/kernel/core_pattern")
    print(json.dumps({"euid": os.geteuid(), "ids": {p: ids(p) for p in pids}, "uid_map": uid_map,
                      "probe": probe.stdout, "core_exit": core.exit_code}))
finally:
    sb.sync.close()
"""


def _interpreter(uid: int) -> tuple[str, dict[str, str]] | None:
    """A Python the ordinary user may run with toolgym importable, or None.

    This interpreter first; where it lives under a directory the user cannot enter (a pyenv
    build under /root), the system Python of the same version with this venv's site-packages.
    """
    site = next((p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)), "")
    env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}"}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{version}"):
        try:
            ok = _as_user(uid, [python, "-c", "import toolgym"], env, groups=None, timeout=60).returncode == 0
        except OSError:
            ok = False
        if ok:
            return python, env
    return None


def _as_user(uid: int, argv: list[str], env: dict[str, str], groups: int | None, timeout: float) -> subprocess.CompletedProcess[str]:
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}"]
    drop += [f"--groups={groups}"] if groups is not None else ["--clear-groups"]
    return subprocess.run([*drop, *argv], capture_output=True, text=True, env=env, cwd="/", timeout=timeout)


@pytest.fixture(scope="module")
def ordinary():
    if os.geteuid() != 0:
        pytest.skip("needs root to start toolgym as an ordinary user (CI runs as root)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no 'nobody' user on this host")
    found = _interpreter(uid)
    if found is None:
        pytest.skip("no Python that 'nobody' may run can import toolgym (the venv's interpreter is not reachable)")
    return uid, *found


@pytest.mark.parametrize("backend", present_backends())
def test_started_as_an_ordinary_user_nothing_is_host_root_and_no_kernel_knob_opens(ordinary, backend):
    uid, python, env = ordinary
    groups = None
    if backend == "docker":
        groups = os.stat("/var/run/docker.sock").st_gid  # root-equivalent: see the module docstring
    done = _as_user(uid, [python, "-c", PROBE, backend, PROBE_WRITE], env, groups, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().split("\n")[-1])
    assert seen["euid"] == uid
    ids = seen["ids"]
    assert len(ids) >= 4, ids  # keeper or init, shell, two sleeps
    assert all(0 not in v for v in ids.values()), ids
    inside, outside, _ = seen["uid_map"][:3]
    if backend == "bwrap":  # bwrap runs as the user itself: every process, and the map, say so
        assert all(v[0] == uid for v in ids.values()), ids
        assert outside == str(uid)
    else:  # dockerd's remap: container root is a subordinate uid
        assert inside == "0" and int(outside) >= 100000 and min(v[0] for v in ids.values()) >= 100000
    tried, _, *opened = seen["probe"].split()
    assert int(tried) > 500, seen["probe"]  # every sysctl file, generated from /proc/sys itself
    assert [p for p in opened if not p.startswith(NAMESPACED)] == []
    assert seen["core_exit"] != 0
    with open("/proc/sys/kernel/core_pattern") as handle:
        assert "/workspace" not in handle.read()
