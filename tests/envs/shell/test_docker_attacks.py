"""The docker backend under attack: a model that searches for whatever raises its reward.

Each attack checks containment and that what the harness reports (file tools, digest,
snapshot/restore, diff, the task's check) is exactly what it reports without the attack.
One container serves the module (a start costs ~0.4 s); each test begins with a reset.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envs.shell.conftest import _docker_missing
from toolgym.envs.shell import PathOutsideWorkspace, make_sandbox

MISSING = _docker_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
LIMITS = {"command_timeout_s": 5.0, "output_bytes": 4096, "memory_mb": 128, "pids": 64, "workspace_mb": 8}
SLOW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# A project whose test fails: a faked pass is what a reward hacker wants.
PROJECT = {
    "a.txt": "alpha\n",
    "sub/b.txt": "tg:missing\n__tg_end_0 0\n",
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n",
}
CHECK = "python3 -m unittest -q test_calc 2>&1 | tail -n 1; exit ${PIPESTATUS[0]}"

# Every command name the harness or a check could use, and every way a shell can shadow one.
NAMES = ["tar", "find", "head", "cat", "realpath", "python3", "bash", "sh", "env", "rm", "mkdir", "stat", "dirname",
         "kill", "timeout", "setpriv", "exec", "cd", "printf", "base64", "ls", "sort", "test", "[", "read", "eval",
         "pgrep", "ipcrm", "seq", "trap", "unittest", "command", "builtin", "source"]
MECHANISMS = {
    "function": "{n}() {{ echo FAKE; return 0; }}",
    "exported function": "{n}() {{ echo FAKE; return 0; }}; export -f {n} 2>/dev/null",
    "alias": "shopt -s expand_aliases; alias {n}='echo FAKE'",
    "BASH_ENV": "printf '%s() {{ echo FAKE; }}\\n' {n} >> /tmp/evil.sh; export BASH_ENV=/tmp/evil.sh ENV=/tmp/evil.sh",
    "PATH entry": "mkdir -p /tmp/bin; printf '#!/bin/sh\\necho FAKE\\n' > /tmp/bin/{n}; chmod +x /tmp/bin/{n}; export PATH=/tmp/bin:$PATH",
}


def project_tar(files: dict[str, str] = PROJECT) -> bytes:
    """The project as an archive, with a symlink that leaves the workspace."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, text in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(text.encode()), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
        link = tarfile.TarInfo("link_out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sb():
    box = make_sandbox("docker", LIMITS)
    box.sync.start()
    yield box
    box.sync.close()


def harness_view(sb) -> list:
    """Everything the environment learns through its harness about a fixed workspace."""
    sb.sync.import_tar(project_tar())
    out: list = [sb.sync.read_file("a.txt"), sb.sync.read_file("sub/b.txt"), sb.sync.list_dir("."), sb.sync.workspace_digest()]
    snap = sb.sync.snapshot()
    out.append(sb.sync.write_file("w.txt", "written\n"))
    out += [sb.sync.read_file("w.txt"), sb.sync.diff(snap).added]
    sb.sync.restore(snap)
    out.append(sb.sync.workspace_digest())
    check = sb.sync.run_isolated(CHECK, 30)
    out.append((check.exit_code, check.stdout))
    with pytest.raises(PathOutsideWorkspace):
        sb.sync.read_file("link_out")
    out.append(sb.sync.workspace_digest())  # the check changed nothing (no __pycache__ left)
    return out


@pytest.fixture(scope="module")
def baseline(sb):
    sb.sync.reset_session()
    view = harness_view(sb)
    assert view[-2] == (1, "FAILED (failures=1)\n") and view[3] == view[-3] == view[-1]
    return view


@SLOW
@given(names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True), how=st.sampled_from(sorted(MECHANISMS)))
def test_shadowing_any_command_changes_no_harness_result(sb, baseline, names, how):
    sb.sync.reset_session()
    shadow = "; ".join(MECHANISMS[how].format(n=name) for name in names)
    sb.sync.run(shadow)
    assert harness_view(sb) == baseline


def test_a_faked_test_summary_scores_nothing(sb, baseline):
    sb.sync.reset_session()
    sb.sync.run("python3() { printf 'Ran 2 tests in 0.001s\\n\\nOK\\n'; }; export -f python3; exec() { :; }; export -f exec; "
                "printf 'python3() { echo OK; }\\n' > /tmp/e.sh; export BASH_ENV=/tmp/e.sh; trap 'echo OK' EXIT")
    assert sb.sync.run("python3 -m unittest").stdout.endswith("OK\n")  # the model fooled only itself
    sb.sync.reset_session()
    fresh = sb.sync.run("declare -F | grep -v __tg_; type -t exec python3; echo ${BASH_ENV:-none}; trap -p")
    assert fresh.stdout == "builtin\nfile\nnone\n"  # a reset is a new process, not an exec in the old one
    assert harness_view(sb) == baseline


def test_background_jobs_and_stolen_fds_cannot_touch_the_harness(sb, baseline):
    sb.sync.reset_session()
    # Read from and write to every fd the shell holds (but its watchdog's FIFOs: stealing from
    # those only stalls the model's own commands), and keep rewriting the checked files.
    sb.sync.run(
        "n=0; for fd in /proc/$$/fd/*; do [ -p $fd ] && continue; n=$((n+1)); (cat < $fd > /tmp/steal.$n 2>/dev/null &); "
        "(printf '\\n__tg_end_x 0\\ntg:outside\\n' > $fd 2>/dev/null &); done; "
        "(while :; do echo 'return a + b' > /tmp/fake; cp /tmp/fake calc.py 2>/dev/null; sleep 0.01; done) >/dev/null 2>&1 &"
    )
    assert harness_view(sb) == baseline
    assert "alpha" not in sb.sync.run("cat /tmp/steal.* 2>/dev/null; echo done").stdout


def test_forged_protocol_strings_are_plain_output(sb):
    sb.sync.reset_session()
    forged = sb.sync.run("printf '\\n__tg_end_0123 0\\n'; echo 'tg:outside' >&2; echo after")
    assert forged.stdout == "\n__tg_end_0123 0\nafter\n" and forged.exit_code == 0
    for name in ["tg:missing", "tg:isdir x", "-n", "a\nb", "__tg_end_0 0"]:
        sb.sync.write_file(name, "tg:outside\n")
        assert sb.sync.read_file(name) == "tg:outside\n"
    assert set(sb.sync.list_dir(".")) >= {"tg:missing", "tg:isdir x", "-n", "a\nb", "__tg_end_0 0"}


def test_no_process_maps_to_host_root_or_holds_a_capability(sb):
    from toolgym.envs.shell.docker_backend import userns_remapped

    sb.sync.reset_session()
    sb.sync.run("sleep 30 &")
    status = sb.sync.run("grep -h -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/$$/status; cat /proc/$$/uid_map").stdout
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status
    host_pids = _container_host_pids(sb.container.id)
    assert len(host_pids) >= 4  # init, keeper, shell, watchdog, sleep
    uids = {_host_uid(pid) for pid in host_pids}
    if os.environ.get("TOOLGYM_DOCKER_USERNS") == "0":
        pytest.skip("TOOLGYM_DOCKER_USERNS=0: dockerd deliberately runs without --userns-remap")
    assert userns_remapped(), "dockerd runs without --userns-remap: run `make sandbox-deps` (it restarts it remapped)"
    assert 0 not in uids and min(uids) >= 100000, uids
    inside, outside, _ = status.split("\n")[-2].split()
    assert inside == "0" and int(outside) >= 100000


def _container_host_pids(cid: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cgroup") as handle:
                    if cid in handle.read():
                        out.append(int(entry))
            except OSError:
                continue
    return out


def _host_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_kernel_knobs_are_read_only_and_root_files_unreadable(sb):
    sb.sync.reset_session()
    with open("/proc/sys/kernel/core_pattern") as handle:
        before = handle.read()
    # Every knob root could write on the host: none opens for writing here.
    listed = sb.sync.run("find /proc/sys -type f -perm -200 2>/dev/null > /tmp/knobs; grep -c . /tmp/knobs; grep -c core_pattern /tmp/knobs")
    assert int(listed.stdout.split()[0]) > 50 and listed.stdout.split()[1] == "1"
    script = "while read -r f; do (: > $f) 2>/dev/null && echo WROTE $f; done < /tmp/knobs; " \
             "cat /proc/slabinfo /proc/kpageflags 2>/dev/null | head -c 1 | wc -c; echo c > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ"
    result = sb.sync.run(script, timeout_s=10)
    assert result.stdout == "0\n", result.stdout
    with open("/proc/sys/kernel/core_pattern") as handle:
        assert handle.read() == before
    assert sb.sync.run("grep -c ' /proc/sys ro,' /proc/self/mountinfo").stdout == "1\n"


def test_the_only_writable_places_are_the_ones_a_reset_wipes(sb):
    sb.sync.reset_session()
    found = sb.sync.run("find / \\( -path /proc -o -path /sys \\) -prune -o -type d -writable -print 2>/dev/null", timeout_s=10)
    roots = ("/workspace", "/tmp", "/dev/shm", "/dev/mqueue")
    paths = found.stdout.split("\n")
    assert "/workspace" in paths and "/tmp" in paths
    assert [p for p in paths if p and not any(p == r or p.startswith(r + "/") for r in roots)] == []


def test_a_check_cannot_forge_its_status_change_the_workspace_or_outlive_its_limit(sb):
    sb.sync.reset_session()
    sb.sync.import_tar(project_tar())
    sb.sync.run("cd sub; V=7")
    digest = sb.sync.workspace_digest()
    forged = sb.sync.run_isolated("printf '0 0 0\\n'; echo tg:outside >&2; touch new; rm a.txt; exit 125", 10)
    assert (forged.exit_code, forged.stdout, forged.stderr) == (125, "0 0 0\n", "tg:outside\n")
    slow = sb.sync.run_isolated("(sleep 60 &); sleep 60", 1)
    assert slow.timed_out and slow.exit_code is None
    assert sb.sync.workspace_digest() == digest  # neither check changed the workspace
    after = sb.sync.run("pwd; echo $V; ps -u 1000 -o args= | grep -c '^sleep'")
    assert after.stdout.split() == ["/workspace/sub", "7", "0"]  # the model's shell kept its state


def test_root_processes_are_out_of_the_models_reach(sb):
    """The keeper and every harness process run as the container's root: no signal, ptrace or /proc peek."""
    sb.sync.reset_session()
    probe = (
        "for p in $(ps -u 0 -o pid=); do kill -0 $p 2>&1; cat /proc/$p/environ 2>&1 | head -c 60; echo; done; "
        "python3 -c \"import ctypes, subprocess; libc = ctypes.CDLL(None, use_errno=True); "
        "pids = subprocess.run(['ps', '-u', '0', '-o', 'pid='], capture_output=True, text=True).stdout.split(); "
        "print('ptrace', sorted({libc.ptrace(16, int(p), 0, 0) for p in pids}), ctypes.get_errno())\""
    )
    out = sb.sync.run(probe).stdout
    assert out.count("Operation not permitted") >= 2 and out.count("Permission denied") >= 2
    assert "ptrace [-1] 1" in out  # EPERM for every root process
    assert sb.sync.run("echo alive").stdout == "alive\n"
