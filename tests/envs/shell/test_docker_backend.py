"""The docker backend against a real Docker Engine: session protocol, limits, snapshots, errors, leaks.

Needs dockerd and the base image (``make sandbox-deps``); skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envs.shell.conftest import _docker_missing
from toolgym.envs.shell import SandboxUnavailable, make_sandbox
from toolgym.envs.shell.sandbox import tar_of_files

MISSING = _docker_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
LIMITS = {"command_timeout_s": 2.0, "output_bytes": 1024, "memory_mb": 128, "pids": 64, "workspace_mb": 8}


def containers(owner: int | None = None) -> list:
    """This process's containers by default (other jobs may share the daemon)."""
    from toolgym.envs.shell.docker_backend import live_containers

    return live_containers(owner or os.getpid())


@pytest.fixture(scope="module")
def sb():
    box = make_sandbox("docker", LIMITS)
    box.sync.start()
    yield box
    box.sync.close()


def test_session_keeps_cwd_variables_and_jobs(sb):
    sb.sync.reset_session()
    assert sb.sync.run("mkdir -p sub && cd sub && Y=7; sleep 30 &").exit_code == 0
    assert sb.sync.run("pwd; echo $Y; jobs | wc -l").stdout.split() == ["/workspace/sub", "7", "1"]
    sb.sync.reset_session()
    assert sb.sync.run("pwd; echo ${Y:-unset}; ps -e -o comm= | grep -c sleep").stdout.split() == ["/workspace", "unset", "0"]


def test_streams_exit_codes_and_syntax_errors(sb):
    result = sb.sync.run("echo out; echo err >&2; f() { return 3; }; f")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert sb.sync.run("printf 'no newline'").stdout == "no newline"
    bad = sb.sync.run("if then fi (")
    assert bad.exit_code == 2 and "syntax error" in bad.stderr
    assert sb.sync.run("cat").exit_code == 0  # stdin is /dev/null, never the protocol


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200))
def test_any_text_round_trips_through_the_session(sb, text):
    quoted = "'" + text.replace("'", "'\"'\"'") + "'"
    result = sb.sync.run(f"printf %s {quoted}")
    assert result.exit_code == 0 and result.stdout == text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def test_timeout_kills_the_tree_and_the_session_goes_on(sb):
    sb.sync.reset_session()
    sb.sync.run("cd /tmp; Z=1")
    result = sb.sync.run("sleep 60 & sleep 61")
    assert result.timed_out and result.exit_code is None and "killed" in result.note
    after = sb.sync.run("pwd; echo $Z; ps -e -o comm= | grep -c sleep")
    assert after.stdout.split() == ["/tmp", "1", "0"]  # state kept, every sleep gone


def test_a_stuck_shell_or_exit_is_replaced_with_a_note(sb):
    stuck = sb.sync.run("while :; do :; done", timeout_s=0.5)
    assert stuck.timed_out and "new shell" in stuck.note
    gone = sb.sync.run("exit 7")
    assert gone.exit_code is None and "status 7" in gone.note and "files kept" in gone.note
    assert sb.sync.run("echo alive").stdout == "alive\n"


def test_kill_everything_inside_keeps_the_container_and_files(sb):
    sb.sync.write_file("kept.txt", "still here")
    result = sb.sync.run("sleep 30 & kill -9 -1; kill -9 1; sleep 0.2")
    assert "not permitted" in result.stderr  # init is out of reach
    assert sb.sync.run("cat kept.txt; echo; ps -e -o comm= | grep -c sleep").stdout.split() == ["still", "here", "0"]
    assert sb.sync.run("sleep 5", timeout_s=0.5).timed_out  # a new watchdog guards the next command


def test_output_is_capped_with_a_marker(sb):
    result = sb.sync.run("yes | head -c 100000")
    assert result.truncated and len(result.stdout) < 1200 and "truncated" in result.stdout
    endless = sb.sync.run("yes", timeout_s=1.0)
    assert endless.timed_out and endless.truncated


def test_limits_and_isolation(sb):
    sb.sync.reset_session()
    assert sb.sync.run("id -u").stdout == "1000\n"
    assert sb.sync.run("touch /etc/x").exit_code != 0  # read-only root
    assert sb.sync.run("getent hosts example.com || python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 1)\"").exit_code != 0
    fill = sb.sync.run("dd if=/dev/zero of=big bs=1M count=20 2>&1; rm -f big")
    assert "No space left" in fill.stdout
    mem = sb.sync.run("python3 -c 'x = bytearray(400 * 2**20)'")
    assert mem.exit_code != 0
    spawn = (
        "import subprocess\nkids = []\ntry:\n    for _ in range(100):\n        kids.append(subprocess.Popen(['sleep', '5']))\n"
        "except OSError:\n    print('refused after', len(kids))\nfor k in kids:\n    k.kill()\n"
    )
    sb.sync.write_file("spawn.py", spawn)
    forks = sb.sync.run("python3 spawn.py")
    assert forks.stdout.startswith("refused after") and int(forks.stdout.split()[-1]) < 64  # the pids limit


def test_snapshot_restore_and_digest_match_bwrap(sb):
    files = {"a.txt": "alpha\n", "dir/b.py": "print('b')\n"}
    sb.sync.import_tar(tar_of_files(files))
    snap = sb.sync.snapshot()
    sb.sync.run("echo changed > a.txt; rm dir/b.py; echo new > c.txt")
    diff = sb.sync.diff(snap)
    assert (diff.added, diff.removed, diff.changed) == (["c.txt"], ["dir/b.py"], ["a.txt"])
    sb.sync.restore(snap)
    assert sb.sync.workspace_digest() == snap.digest
    other = make_sandbox("bwrap")
    try:
        other.sync.import_tar(tar_of_files(files))
        assert other.sync.workspace_digest() == snap.digest  # same files, same digest, any backend
    finally:
        other.sync.close()


def test_missing_image_and_daemon_say_how_to_fix(monkeypatch):
    with pytest.raises(SandboxUnavailable, match="make sandbox-deps"):
        make_sandbox("docker", image="toolgym/no-such-image:latest")
    from toolgym.envs.shell import docker_backend

    docker_backend.docker_client.cache_clear()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    try:
        with pytest.raises(SandboxUnavailable, match="dockerd is not answering.*make sandbox-deps"):
            make_sandbox("docker")
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        docker_backend.docker_client.cache_clear()


def test_close_leaves_no_container():
    before = len(containers())
    boxes = [make_sandbox("docker", LIMITS) for _ in range(3)]
    for box in boxes:
        box.sync.start()
    assert len(containers()) == before + 3
    for box in boxes:
        box.sync.close()
        box.sync.close()  # idempotent
    assert len(containers()) == before


def test_a_killed_owner_leaves_no_container():
    """SIGKILL of the process that started the sandbox: the tether closes and dockerd removes it."""
    script = "from toolgym.envs.shell import make_sandbox; import os, sys; b = make_sandbox('docker'); b.sync.start(); print(b.container.id, flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        cid = proc.stdout.readline().strip()
        assert [c.id for c in containers(proc.pid)] == [cid]
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while containers(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not containers(proc.pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="make sandbox-deps runs as root")
def test_sandbox_deps_is_idempotent_and_fast_when_done():
    started = time.monotonic()
    out = subprocess.run(["bash", "scripts/sandbox_deps.sh"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all present" in out.stdout and "already answering" in out.stdout and "already built" in out.stdout
    assert time.monotonic() - started < 10


def test_a_dead_container_is_noticed_and_replaced_at_the_next_reset():
    from toolgym.envs.shell.env import ShellEnv
    from toolgym.envs.types import Task

    env = ShellEnv(backend="docker", tasks=[Task(id="t", instruction="x", initial_state={"files": {"a.txt": "a\n"}})])
    try:
        env.reset(seed=0)
        first = env.sandbox
        assert first.alive
        first.container.kill()  # from outside, as an OOM kill of the keeper or a dockerd restart would
        deadline = time.monotonic() + 10
        while first.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not first.alive
        env.reset(seed=0)
        assert env.sandbox is not first and env.sandbox.sync.read_file("a.txt") == "a\n"
    finally:
        env.close()
