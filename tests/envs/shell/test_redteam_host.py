"""Red team, host side: privilege, leaks between episodes, limits, hostile file kinds (bwrap).

Each test makes many attempts of one class, generated from what the sandbox itself exposes
(every file of /proc/sys, every writable directory, every process) rather than from a fixed
list, checks that each is contained AND that the host and the harness are unaffected, and
asserts how many attempts it made (the counts are quoted in docs/shell_sandboxes.md).
"""

from __future__ import annotations

import os
import time

import pytest

from toolgym.envs.shell import SandboxLimits, make_sandbox
from toolgym.envs.shell.bwrap_backend import BwrapSandbox
from toolgym.envs.shell.pool import SandboxPool
from toolgym.envs.shell.sandbox import tar_of_files

LIMITS = {"command_timeout_s": 10.0, "memory_mb": 128, "pids": 48, "workspace_mb": 16, "output_bytes": 65536}
PROBE_WRITE = """
import os
tried, opened = 0, []
for top in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/kcore", "/proc/kmsg", "/proc/1/mem"):
    walk = os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]
    for folder, _, files in walk:
        for name in files:
            path = os.path.join(folder, name)
            tried += 1
            try:
                os.close(os.open(path, os.O_WRONLY))  # opened, never written: a failure must not harm the host
                opened.append(path)
            except OSError:
                pass
print(tried, len(opened), " ".join(opened))
"""
FORK_80 = """
import os, time
n = 0
for _ in range(80):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    n += 1
print(n)
"""
NAMESPACED = (
    "/proc/sys/fs/mqueue/", "/proc/sys/kernel/msg", "/proc/sys/kernel/auto_msgmni", "/proc/sys/kernel/sem",
    "/proc/sys/kernel/shm", "/proc/sys/kernel/ns_last_pid", "/proc/sys/kernel/pid_max",
)
"""Knobs of the sandbox's own ipc and pid namespaces (the kernel keeps one copy per namespace)."""
ROOT_ONLY = ("/proc/slabinfo", "/proc/kpageflags", "/proc/kpagecount", "/proc/kpagecgroup", "/proc/kcore", "/proc/kmsg",
             "/proc/vmallocinfo", "/proc/pagetypeinfo", "/proc/timer_list", "/proc/1/environ", "/proc/1/mem", "/proc/1/fd/3",
             "/proc/1/fd/4", "/proc/1/maps", "/proc/1/stack", "/proc/1/syscall", "/proc/1/root/")


@pytest.fixture(scope="module")
def box():
    sb = make_sandbox("bwrap", LIMITS)
    sb.sync.start()
    yield sb
    sb.sync.close()


def _status_ids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return [int(x) for key in ("Uid", "Gid") for x in fields[key].split()]


# ---------------------------------------------------------------------------- privilege


def test_no_process_of_the_sandbox_is_host_root(box):
    box.sync.run("sleep 30 & (sleep 30 &) ; true")
    tree = [pid for pid, _, _ in box.session._tree()] + [box.session.pid]
    ids = {pid: _status_ids(pid) for pid in tree if os.path.exists(f"/proc/{pid}")}
    assert len(ids) >= 5  # launcher, keeper, shell, two sleeps
    assert all(0 not in v for v in ids.values()), ids
    assert box.host_uid != 0 and all(v[0] == box.host_uid for v in ids.values())
    with open(f"/proc/{box.session.loop_pid}/uid_map") as f:  # read from the host: outside ids in its terms
        inside, outside, count = f.read().split()
    assert (inside, outside, count) == ("1000", str(box.host_uid), "1")
    box.sync.reset_session()


def test_no_host_global_kernel_setting_opens_for_writing(box):
    result = box.sync.run(f"python3 -c {_q(PROBE_WRITE)}")
    tried, _, opened = result.stdout.strip().split(" ", 2)
    assert int(tried) > 500, result  # every sysctl file, generated from /proc/sys itself
    global_ones = [p for p in opened.split() if not p.startswith(NAMESPACED)]
    assert global_ones == []
    assert box.sync.run("echo '|/workspace/x' > /proc/sys/kernel/core_pattern").exit_code != 0
    with open("/proc/sys/kernel/core_pattern") as f:
        assert "/workspace" not in f.read()


def test_root_only_kernel_files_keys_and_capabilities_stay_closed(box):
    script = "; ".join(f"if [ -e {p} ] && head -c1 {p} >/dev/null 2>&1; then echo OPEN {p}; fi" for p in ROOT_ONLY)
    result = box.sync.run(script + "; cat /proc/keys | wc -l; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
    assert "OPEN" not in result.stdout, result.stdout
    lines = result.stdout.split("\n")
    assert lines[0] == "0"  # no keyring of the host reachable
    assert all(line.split()[1] == "0000000000000000" for line in lines[1:4])


# ---------------------------------------------------------------------------- leaks between episodes

LEAVE_BEHIND = [
    "sleep 300 &", "setsid sleep 300 &", "(exec -a bash sleep 300) &", "(exec -a /.keeper sleep 300) &",
    "nohup sh -c 'while :; do sleep 1; done' >/dev/null 2>&1 &", "(trap '' TERM HUP INT; sleep 300) &",
    "(sleep 300 &) &", "ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null; ipcmk -S 2 >/dev/null",
]


def _writable_dirs(sb) -> list[str]:
    out = sb.sync.run("find / \\( -path /proc -o -path /sys \\) -prune -o -type d -writable -print 2>/dev/null").stdout
    return sorted(line for line in out.split("\n") if line)


def _leave_traces(sb, token: str) -> int:
    dirs = _writable_dirs(sb)
    assert set(dirs) >= {"/workspace", "/tmp", "/dev/shm"}
    sb.sync.run("; ".join(f"echo {token} > {d}/.{token} && echo {token} > {d}/$'\\n{token}'" for d in dirs))
    for command in LEAVE_BEHIND:
        sb.sync.run(command)
    return 2 * len(dirs) + len(LEAVE_BEHIND)


def _assert_clean(sb, token: str, initial: set[str]) -> None:
    places = " ".join(_writable_dirs(sb))
    found = sb.sync.run(f"grep -rl {token} {places} 2>/dev/null; ipcs -m -q -s | grep -c '^0x'")
    assert found.stdout.split("\n")[:-2] == [] and found.stdout.strip().endswith("0"), found.stdout
    # No pipeline: a pipeline's second process may still be a forked bash when ps lists it.
    procs = sorted(sb.sync.run("ps -e -o comm=").stdout.split())
    assert procs in (sorted(["sh", "bash", "ps"]), sorted([".keeper", "bash", "ps"])), procs
    assert set(sb.sync.list_dir(".")) == initial


def test_reset_leaves_no_file_process_or_ipc_of_the_last_episode(box):
    token = "leak7a1f"
    initial = tar_of_files({"task.txt": "start\n"})
    attempts = _leave_traces(box, token)
    box.sync.reset_session()
    box.sync.import_tar(initial)  # what ShellEnv.reset does: fresh shell, then the task's files
    _assert_clean(box, token, {"task.txt"})
    assert attempts >= 14


def test_a_pool_wipe_leaves_nothing_for_the_next_sibling():
    pool = SandboxPool("bwrap", LIMITS, size=2)  # room to keep the released one
    try:
        from toolgym.envs.shell.runtime import run_sync

        first = run_sync(pool.acquire())
        _leave_traces(first, "sib9c2e")
        run_sync(pool.release(first))
        assert first in pool._ready  # wiped and kept: what the next acquire() may hand out
        _assert_clean(first, "sib9c2e", set())
    finally:
        run_sync(pool.close())


# ---------------------------------------------------------------------------- limits


@pytest.mark.parametrize("use_cgroups", [None, False], ids=["cgroups-if-writable", "rlimits-only"])
def test_one_quota_holds_over_every_writable_place_and_recovers(use_cgroups):
    sb = BwrapSandbox(SandboxLimits(**{**LIMITS, "memory_mb": 64}), use_cgroups=use_cgroups)
    sb.sync.start()
    try:
        places = _writable_dirs(sb)
        fills = "; ".join(f"head -c 200M /dev/zero > {p}/fill 2>/dev/null" for p in places)
        result = sb.sync.run(f"{fills}; du -sck {' '.join(places)} 2>/dev/null | tail -n1")
        used_kib = int(result.stdout.split()[0])
        assert used_kib <= 32 * 1024 + 64, result  # one quota (min(16, 64/2) MiB here) for all places together
        assert sb.alive and sb.sync.run("echo alive").stdout == "alive\n"
        with pytest.raises(OSError, match="workspace is full"):
            sb.sync.write_file("big.txt", "x" * (20 * 2**20))
        assert sb.sync.run("stat -c %s big.txt").stdout.strip() in ("0", "")  # never a half-written file that claims success
        sb.sync.reset_session()
        sb.sync.import_tar(tar_of_files({}))
        assert sb.sync.run("du -sck /workspace /tmp /dev/shm | tail -n1").stdout.split()[0] == "0"
        if use_cgroups is False:
            assert "PER PROCESS" in sb.enforcement  # the weaker guarantee is spelled out, not silent
            # One process forking (bash would retry a failed fork for seconds): how many it gets.
            forked = sb.sync.run(f"python3 -c {_q(FORK_80)}")
            alive = len(sb.session._tree()) + 1  # and the launcher: every process of the sandbox uid
            assert 10 < int(forked.stdout) < 80 and alive <= LIMITS["pids"], (forked, alive)
    finally:
        sb.sync.close()


# ---------------------------------------------------------------------------- hostile file kinds

HOSTILE = (
    "mkdir -p d/sub && echo secret > d/sub/locked && chmod 000 d/sub/locked && chmod 000 d/sub; "
    "echo zero > nothing && chmod 000 nothing; mkfifo pipe; "
    "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'; "
    "truncate -s 1T sparse; printf 'tail' >> sparse; head -c 3M /dev/urandom > big; "
    "touch -- $'new\\nline' $'bad\\xff\\xfename' ' lead' '*' '-rf'; ln -s /etc/passwd out; ln -s d inside; "
    "mkdir many && (cd many && seq 1 20000 | xargs touch)"
)


def test_hostile_file_kinds_are_measured_exactly_or_refused_clearly(box):
    box.sync.import_tar(tar_of_files({}))
    assert box.sync.run(HOSTILE).exit_code == 0
    started = time.monotonic()
    snap = box.sync.snapshot()
    assert time.monotonic() - started < 30 and len(snap.tar) < 40 * 2**20  # 1 TiB of hole costs nothing (20k headers do)
    man = snap.manifest
    assert man["nothing"]["mode"] == "0000" and man["nothing"]["size"] == 5
    assert man["d/sub/locked"]["size"] == 7 and man["d/sub"]["mode"] == "0000"
    assert man["pipe"]["type"] == "other" and "sock" not in man and any("'sock'" in n and "socket" in n for n in snap.notes)
    assert man["sparse"]["size"] == 2**40 + 4 and man["out"] == {"type": "symlink", "target": "/etc/passwd"}
    assert sum(1 for p in man if p.startswith("many/")) == 20000
    names = box.sync.list_dir(".")
    assert "new\nline" in names and "bad\udcff\udcfename" in names and "-rf" in names and "d/" in names
    digest = box.sync.workspace_digest()
    box.sync.import_tar(tar_of_files({"other": "x"}))
    box.sync.restore(snap)
    assert box.sync.workspace_digest() == digest  # mode-000 files and sparse files come back exactly
    assert box.sync.run("stat -c %b sparse").stdout.strip() in ("8", "16")  # still sparse (a few blocks)
    with pytest.raises(OSError, match="FIFO"):
        box.sync.read_file("pipe")  # refused at once, never a hang
    assert box.sync.read_file("nothing") == "zero\n"
    with pytest.raises(ValueError, match="outside the workspace"):
        box.sync.read_file("out")
    assert box.sync.read_file("inside/sub/locked") == "secret\n"
    box.sync.import_tar(tar_of_files({}))


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
