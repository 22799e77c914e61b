"""The sandbox interface on bwrap and local: session semantics, limits, file tools, snapshots, errors."""

from __future__ import annotations

import asyncio
import shutil
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.envs.shell import PathOutsideWorkspace, SandboxUnavailable, make_sandbox
from toolgym.envs.shell.sandbox import SandboxLimits, tar_of_files
from toolgym.errors import ConfigError

LIMITS = {"command_timeout_s": 2.0, "output_bytes": 1024}


@pytest.fixture(scope="module", params=["bwrap", "local"])
def sb(request):
    with pytest.warns(RuntimeWarning, match="NO isolation") if request.param == "local" else _nothing():
        box = make_sandbox(request.param, LIMITS)
        box.sync.start()
    yield box
    box.sync.close()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_session_keeps_cwd_variables_and_jobs(sb):
    sb.sync.reset_session()
    assert sb.sync.run("mkdir -p sub && cd sub && Y=7; sleep 30 &").exit_code == 0
    result = sb.sync.run("pwd; echo $Y; jobs | wc -l")
    assert result.stdout.split() == [f"{sb.workspace}/sub", "7", "1"]  # the background job lives on
    sb.sync.reset_session()
    assert sb.sync.run("pwd; echo ${Y:-unset}").stdout.split() == [sb.workspace, "unset"]


def test_stdout_stderr_and_exit_code_are_apart(sb):
    result = sb.sync.run("echo out; echo err >&2; exit_code() { return 3; }; exit_code")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert sb.sync.run("printf 'no newline'").stdout == "no newline"


def test_syntax_error_and_exit_keep_the_sandbox_usable(sb):
    bad = sb.sync.run("if then fi (")
    assert bad.exit_code == 2 and "syntax error" in bad.stderr
    sb.sync.write_file("kept.txt", "still here")
    gone = sb.sync.run("exit 7")
    assert gone.exit_code is None and "status 7" in gone.note and "files kept" in gone.note
    assert sb.sync.read_file("kept.txt") == "still here"


def test_timeout_kills_the_command_and_the_session_goes_on(sb):
    result = sb.sync.run("sleep 30", timeout_s=0.5)
    assert result.timed_out and result.exit_code is None and "0.5 s limit" in result.note
    busy = sb.sync.run("while :; do :; done", timeout_s=0.5)
    assert busy.timed_out and "new shell started" in busy.note
    assert sb.sync.run("echo ok").stdout == "ok\n"


def test_output_cap_marks_truncation(sb):
    result = sb.sync.run("head -c 5000 /dev/zero | tr '\\0' a")
    assert result.truncated and result.stdout.startswith("a" * 1024) and "truncated: 3976 more bytes" in result.stdout


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=12).filter(lambda s: s.strip(" .") and not s.startswith("-")),
    content=st.text(max_size=200),
)
def test_write_then_read_round_trips(sb, name, content):
    sb.sync.write_file(f"rt/{name}", content)
    assert sb.sync.read_file(f"rt/{name}") == content
    assert name in sb.sync.list_dir("rt")


@settings(max_examples=25, deadline=None)
@given(path=st.text(min_size=1, max_size=20))
def test_resolve_never_leaves_the_workspace(path):
    box = make_sandbox("bwrap")
    try:
        full = box.resolve(path)
    except PathOutsideWorkspace:
        return
    assert full == "/workspace" or full.startswith("/workspace/")


def test_file_tool_errors_are_clear(sb):
    with pytest.raises(FileNotFoundError, match="no such file"):
        sb.sync.read_file("missing.txt")
    sb.sync.run("mkdir -p adir")
    with pytest.raises(IsADirectoryError):
        sb.sync.read_file("adir")
    sb.sync.write_file("plain.txt", "x")
    with pytest.raises(NotADirectoryError):
        sb.sync.list_dir("plain.txt")
    with pytest.raises(PathOutsideWorkspace, match="outside the workspace"):
        sb.sync.write_file("../x", "x")
    with pytest.raises(TypeError):
        sb.sync.run(["ls"])
    with pytest.raises(ValueError, match="empty"):
        sb.sync.run("   ")


def test_snapshot_restore_and_diff(sb):
    sb.sync.import_tar(tar_of_files({"a.txt": "a\n", "d/b.txt": "b\n"}))
    snap = sb.sync.snapshot()
    sb.sync.run("rm a.txt; echo changed > d/b.txt; echo new > c.txt; chmod 600 d/b.txt")
    diff = sb.sync.diff(snap)
    assert (diff.added, diff.removed, diff.changed) == (["c.txt"], ["a.txt"], ["d/b.txt"])
    sb.sync.restore(snap)
    assert sb.sync.workspace_digest() == snap.digest and sb.sync.diff(snap).empty


def test_digest_ignores_times_but_sees_modes(sb):
    sb.sync.import_tar(tar_of_files({"x.sh": "echo hi\n"}))
    first = sb.sync.workspace_digest()
    sb.sync.run("touch -d 2001-01-01 x.sh")
    assert sb.sync.workspace_digest() == first
    sb.sync.run("chmod +x x.sh")
    assert sb.sync.workspace_digest() != first


def test_digest_is_the_same_on_every_backend():
    files = {"a.txt": "a\n", "src/m.py": "print(1)\n"}
    digests = set()
    for backend in ("bwrap", "local"):
        box = make_sandbox(backend)
        with pytest.warns(RuntimeWarning) if backend == "local" else _nothing():
            box.sync.start()
        box.sync.import_tar(tar_of_files(files))
        digests.add(box.sync.workspace_digest())
        box.sync.close()
    assert len(digests) == 1


def test_many_sandboxes_from_one_event_loop():
    async def main():
        boxes = [make_sandbox("bwrap") for _ in range(12)]
        await asyncio.gather(*(b.start() for b in boxes))
        outs = await asyncio.gather(*(b.run(f"echo {i}") for i, b in enumerate(boxes)))
        await asyncio.gather(*(b.close() for b in boxes))
        return [o.stdout.strip() for o in outs]

    assert asyncio.run(main()) == [str(i) for i in range(12)]


def test_bad_backend_and_limits_say_what_to_do(monkeypatch):
    with pytest.raises(ConfigError, match="Did you mean 'bwrap'"):
        make_sandbox("bwarp")
    with pytest.raises(ConfigError, match="memory_mb"):
        make_sandbox("bwrap", {"memory_mbs": 10})
    with pytest.raises(ConfigError, match="command_timeout_s"):
        make_sandbox("bwrap", {"command_timeout_s": -1})
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap"):
        make_sandbox("bwrap")


def test_closed_sandbox_refuses_and_close_is_idempotent():
    box = make_sandbox("bwrap", SandboxLimits(command_timeout_s=1))
    box.sync.start()
    box.sync.close()
    box.sync.close()
    with pytest.raises(Exception, match="closed"):
        box.sync.run("true")


def test_rlimit_fallback_when_cgroups_are_not_used():
    from toolgym.envs.shell.bwrap_backend import BwrapSandbox

    box = BwrapSandbox(SandboxLimits(memory_mb=128, pids=32, command_timeout_s=3), use_cgroups=False)
    box.sync.start()
    try:
        assert box.cgroup is None
        bomb = box.sync.run("python3 -c \"a = bytearray(1 << 30); print('allocated')\"")
        assert bomb.exit_code != 0 and "MemoryError" in bomb.stderr
        assert box.sync.run("ulimit -u").stdout.strip() == "32"
    finally:
        box.sync.close()


def test_cgroup_limits_are_written_and_removed():
    from toolgym.envs.shell.bwrap_backend import BwrapSandbox
    from toolgym.envs.shell.cgroups import host_layout

    layout = host_layout()
    if isinstance(layout, str):
        pytest.skip(f"no writable cgroup here (the rlimit fallback is tested above): {layout}")
    box = BwrapSandbox(SandboxLimits(memory_mb=96, pids=40, cpu_quota=0.5))
    box.sync.start()
    if layout.mode == "v1":
        memory, pids, cpu = box.cgroup.dirs
        files = {memory / "memory.limit_in_bytes": str(96 * 2**20), pids / "pids.max": "40", cpu / "cpu.cfs_quota_us": "50000"}
    else:
        (one,) = box.cgroup.dirs
        files = {one / "memory.max": str(96 * 2**20), one / "pids.max": "40", one / "cpu.max": "50000 100000"}
    assert {path: path.read_text().strip() for path in files} == files
    assert box.session.pid in box.cgroup.members()
    box.sync.close()
    assert not any(d.exists() for d in box.cgroup.dirs)


def test_a_broken_archive_is_refused_and_never_run_as_commands(sb):
    from toolgym.envs.shell import SandboxError

    sb.sync.import_tar(tar_of_files({"keep.txt": "k"}))
    with pytest.raises(SandboxError, match="could not import"):
        sb.sync.import_tar(b"not a tar archive " * 50 + b"\ntouch INJECTED\n")
    after = sb.sync.run("ls -A; echo next")
    assert "INJECTED" not in after.stdout and after.stdout.endswith("next\n") and after.note == ""


def test_repeated_session_resets_are_cheap_and_safe(sb):
    for _ in range(5):
        sb.sync.reset_session()
    sb.sync.run("Z=1; sleep 30 &")
    sb.sync.reset_session()
    assert sb.sync.run("echo ${Z:-unset}; jobs | wc -l").stdout.split() == ["unset", "0"]


@pytest.mark.parametrize("launcher_gone_first", [False, True])
def test_a_sandbox_that_cannot_start_says_why_and_leaves_nothing(monkeypatch, launcher_gone_first):
    import os

    from toolgym.envs.shell import SandboxError
    from toolgym.envs.shell.bwrap_backend import BwrapSandbox
    from toolgym.envs.shell.cgroups import live_dirs
    from toolgym.envs.shell.session import BashSession

    real = BwrapSandbox.argv
    monkeypatch.setattr(BwrapSandbox, "argv", lambda self, fds: [real(self, fds)[0], "--bogus-flag", *real(self, fds)[1:]])
    if launcher_gone_first:  # the race CI met: the launcher exits between the keeper's pipe and the shell's
        write = BashSession._write

        async def late_write(self, data):
            self.proc.wait(timeout=5)
            await write(self, data)

        monkeypatch.setattr(BashSession, "_write", late_write)
    def ours() -> set:  # other processes on this host make and remove their own
        return {d for d in live_dirs() if d.name.startswith(f"{os.getpid()}-")}

    before = ours()
    box = BwrapSandbox()
    with pytest.raises(SandboxError, match="Unknown option --bogus-flag"):
        box.sync.start()
    assert ours() <= before


@pytest.mark.parametrize("said", ["bwrap: setting up uid map: Permission denied", "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces"])
def test_a_host_without_unprivileged_user_namespaces_gets_the_fix(said):
    from toolgym.envs.shell.bwrap_backend import _userns_hint

    assert "unprivileged_userns" in _userns_hint(said) and _userns_hint("bwrap: Unknown option --bogus") == ""


def test_run_isolated_sees_the_files_but_nothing_else_of_the_model():
    box = make_sandbox("bwrap", {"command_timeout_s": 5})
    box.sync.start()
    try:
        box.sync.write_file("app/x.txt", "from the model\n")
        box.sync.run("export SECRET=1; f(){ :; }; sleep 30 & echo t > /tmp/model")
        seen = box.sync.run_isolated("cat app/x.txt; echo ${SECRET:-unset}; type -t f || echo nofunc; ls /tmp; ps -e -o comm= | grep -c sleep; touch made_by_check")
        assert seen.stdout == "from the model\nunset\nnofunc\n0\n" and seen.exit_code == 0, seen
        assert box.sync.list_dir(".") == ["app/"]  # what the check writes stays in its own sandbox
    finally:
        box.sync.close()
