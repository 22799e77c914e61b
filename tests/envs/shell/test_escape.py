"""Escape battery: each attempt must stay inside the sandbox and leave the host as it was.

Every attempt runs in a real sandbox of each backend present (bwrap always; docker when its
backend, dockerd and the image are there). After each attempt the host is checked: the marker
file is intact, the host listeners received nothing, the host ``sleep`` is alive, and no
process of ours exists outside a sandbox's tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.envs.shell.conftest import own_processes, present_backends
from toolgym.envs.shell import PathOutsideWorkspace, make_sandbox
from toolgym.envs.shell.procs import descendants

SECRET = "toolgym-h5-secret-4c1d"
LIMITS = {"command_timeout_s": 3.0, "memory_mb": 128, "pids": 48, "workspace_mb": 8, "output_bytes": 4096}


class Host:
    """What the host exposes during the battery: listeners, a marker file, a secret, a process."""

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.dir = Path(tempfile.mkdtemp(prefix="toolgym-escape-"))
        self.unix_path = str(self.dir / "host.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen(8)
        self.unix.setblocking(False)
        self.marker = self.dir / "marker.txt"
        self.marker.write_text("untouched\n")
        self.sleeper = subprocess.Popen(["sleep", "600"])
        os.environ["TOOLGYM_ESCAPE_SECRET"] = SECRET

    def assert_unaffected(self) -> None:
        for sock in (self.tcp, self.unix):
            with pytest.raises(BlockingIOError):
                sock.accept()
        with pytest.raises(BlockingIOError):
            self.udp.recvfrom(100)
        assert self.marker.read_text() == "untouched\n"
        assert self.sleeper.poll() is None, "the host process was killed from inside the sandbox"
        assert socket.gethostname() != "evil"

    def close(self) -> None:
        self.sleeper.kill()
        self.sleeper.wait()
        for sock in (self.tcp, self.udp, self.unix):
            sock.close()
        os.environ.pop("TOOLGYM_ESCAPE_SECRET", None)
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()


@pytest.fixture(scope="module")
def host():
    h = Host()
    yield h
    h.close()


@pytest.fixture(scope="module", params=present_backends())
def box(request, host):
    sb = make_sandbox(request.param, LIMITS)
    sb.sync.start()
    yield sb
    sb.sync.close()


def strays(box) -> set[int]:
    """Processes of ours that are outside every sandbox tree and are not the host sleeper."""
    inside = set()
    for p in own_processes():
        inside.update(pid for pid, _, _ in descendants(p))
    return {p for p in own_processes() if p not in inside} - {box_root(box)} - _known()


def box_root(box) -> int:
    """Host pid of a bwrap sandbox's launcher; -1 for backends whose processes are not ours (docker)."""
    return getattr(getattr(box, "session", None), "pid", -1) if box.backend == "bwrap" else -1


def inside_count(box) -> int:
    """Processes the sandbox sees (its own pid namespace), counted from inside."""
    return int(run(box, "ls /proc | grep -c '^[0-9]'").stdout.split()[0])


def _known() -> set[int]:
    return {pid for pid in own_processes() if _argv0(pid) in ("sleep",) and _is_direct_child(pid)}


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _is_direct_child(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return int(stat[stat.rfind(b")") + 2:].split()[1]) == os.getpid()


def run(box, command: str, timeout_s: float | None = None):
    return box.sync.run(command, timeout_s)


ATTEMPTS: dict[str, tuple[str, object]] = {
    # name: (command, check(result, host) -> None)
    "read_shadow": ("cat /etc/shadow", lambda r, h: _denied(r)),
    "host_home": ("ls -a /root /home 2>&1; cat /root/.bash_history", lambda r, h: _denied(r)),
    "host_marker": ("cat {marker}; ls {dir}", lambda r, h: _denied(r)),
    "host_env": ("env; cat /proc/self/environ", lambda r, h: _no_secret(r)),
    "proc1_environ": ("tr '\\0' '\\n' < /proc/1/environ; cat /proc/1/cmdline", lambda r, h: _no_secret(r)),
    "host_pids": ("ls /proc | grep -c '^[0-9]'; cat /proc/[0-9]*/cmdline | tr '\\0' ' '", lambda r, h: _few_pids(r)),
    "write_outside": ("touch /usr/x /etc/x /x /proc/x {marker} 2>&1; echo owned > {marker}", lambda r, h: _denied(r)),
    "tcp_localhost": ("echo hi > /dev/tcp/127.0.0.1/{tcp_port}", lambda r, h: _denied(r)),
    "udp_localhost": ("echo hi > /dev/udp/127.0.0.1/{udp_port}; sleep 0.2", lambda r, h: None),
    "dns": ("getent hosts example.com || getent hosts debian.org", lambda r, h: _denied(r)),
    "unix_socket": ("python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{unix}')\"", lambda r, h: _denied(r)),
    "docker_socket": ("ls -l /var/run/docker.sock /run/docker.sock", lambda r, h: _denied(r)),
    "setuid_id": ("id -u; grep CapEff /proc/self/status; su -c id root </dev/null", lambda r, h: _unprivileged(r)),
    "tiocsti": ("python3 -c \"import fcntl,termios; fcntl.ioctl(open('/dev/tty','w'), termios.TIOCSTI, b'x')\"", lambda r, h: _denied(r)),
    "mount": ("mount -t tmpfs none /tmp 2>&1; mount --bind / /workspace/x", lambda r, h: _denied(r)),
    "ptrace_host": ("python3 -c \"import ctypes,sys; r=ctypes.CDLL(None).ptrace(16, {sleeper}, 0, 0); sys.exit(0 if r == 0 else 1)\"", lambda r, h: _denied(r)),
    "kill_host": ("kill -9 {sleeper}", lambda r, h: _denied(r)),
    "hostname": ("hostname evil", lambda r, h: _denied(r)),
    "set_time": ("date -s '2001-01-01 00:00:00'", lambda r, h: _denied(r)),
    "device_files": ("mknod ./mem c 1 1 2>&1; cat /dev/mem /dev/sda /dev/vda 2>&1 | head -c 10; ls /dev", lambda r, h: _no_disks(r)),
    "nested_userns": ("unshare -Ur id", lambda r, h: _denied(r)),
    "symlink_bash": ("ln -sf / rootlink; cat rootlink/etc/shadow; echo x > rootlink/usr/owned", lambda r, h: _denied(r)),
    "kill_everything": ("kill -9 -1; kill -9 1; sleep 0.2", lambda r, h: None),
    "chroot_escape": ("python3 -c \"import os; os.chroot('/workspace')\"", lambda r, h: _denied(r)),
}


KNOWN_GAPS: dict[tuple[str, str], str] = {}
"""(backend, attempt) pairs a backend is known not to contain yet, with the reason (none today)."""
"""Attempts a backend does not contain yet: reported as xfail with the reason, not hidden."""


def _denied(r) -> None:
    assert r.exit_code != 0, f"the attempt succeeded: {r}"


def _no_secret(r) -> None:
    assert SECRET not in r.stdout + r.stderr


def _few_pids(r) -> None:
    assert int(r.stdout.split()[0]) < 12, f"the sandbox sees too many processes: {r.stdout[:200]}"
    assert "pytest" not in r.stdout and "sleep 600" not in r.stdout


def _unprivileged(r) -> None:
    assert r.stdout.split()[0] != "0"
    assert "CapEff:\t0000000000000000" in r.stdout
    assert r.exit_code != 0  # su fails


def _no_disks(r) -> None:
    names = r.stdout.split()
    assert not {"sda", "vda", "mem", "kmem"} & set(names), names
    assert r.exit_code != 0 or "Operation not permitted" in r.stdout or "No such file" in r.stdout


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_attempt_is_contained(box, host, name):
    if (box.backend, name) in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[box.backend, name])
    command, check = ATTEMPTS[name]
    port = host.tcp.getsockname()[1]
    command = command.format(marker=host.marker, dir=host.dir, tcp_port=port, udp_port=host.udp.getsockname()[1], unix=host.unix_path, sleeper=host.sleeper.pid)
    before = strays(box)
    result = run(box, command)
    check(result, host)
    host.assert_unaffected()
    assert strays(box) <= before
    assert run(box, "echo alive").stdout == "alive\n"


def test_fork_bomb_hits_pid_limit(box, host):
    run(box, ":(){ :|:& };:", timeout_s=3)  # returns at once (the bomb is a background job) or times out
    time.sleep(1)
    if box_root(box) != -1:  # bwrap: the bomb's processes are ours to count from the host
        tree = descendants(box_root(box))
        assert len(tree) <= LIMITS["pids"] + 3, f"{len(tree)} processes in the sandbox after a fork bomb"
    host.assert_unaffected()
    box.sync.reset_session()  # a new episode: the bomb's leftover processes are killed
    assert run(box, "echo alive").stdout == "alive\n"
    assert inside_count(box) <= 6


def test_memory_bomb_is_killed(box, host):
    result = run(box, "python3 -c \"a = bytearray(1 << 30); print('allocated')\"")
    assert "allocated" not in result.stdout and result.exit_code != 0
    host.assert_unaffected()
    assert run(box, "echo alive").stdout == "alive\n"


def test_endless_output_is_capped(box, host):
    result = run(box, "yes escape", timeout_s=2)
    assert result.truncated and len(result.stdout) < LIMITS["output_bytes"] + 200
    assert run(box, "echo alive").stdout == "alive\n"


def test_disk_fill_stops_at_workspace_limit(box, host):
    result = run(box, "head -c 64M /dev/zero > fill; ls -l fill | awk '{print $5}'; head -c 64M /dev/zero > /tmp/fill")
    assert result.exit_code != 0 and "No space left" in result.stderr
    assert int(result.stdout.split()[0]) <= LIMITS["workspace_mb"] * 2**20
    run(box, "rm -f fill /tmp/fill")


def test_background_jobs_are_killed_on_timeout(box, host):
    result = run(box, "sleep 1000 & (setsid sleep 1001 &) ; sleep 100", timeout_s=1)
    assert result.timed_out and result.exit_code is None and "killed" in result.note
    assert "sleep 10" not in run(box, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
    host.assert_unaffected()


def test_file_tools_refuse_symlinks_and_dotdot(box, host):
    run(box, f"ln -sf /etc/passwd link; ln -sf {host.dir} hostdir; mkdir -p d; ln -sf ../.. d/up")
    for path in ("link", "../../etc/passwd", "/etc/passwd", "d/up/etc/passwd", "hostdir/marker.txt"):
        with pytest.raises(PathOutsideWorkspace):
            box.sync.read_file(path)
    with pytest.raises(PathOutsideWorkspace):
        box.sync.write_file("d/up/usr/owned", "x")
    host.assert_unaffected()


def test_no_leftover_processes_after_close(host):
    sb = make_sandbox("bwrap", LIMITS)
    sb.sync.start()
    root = box_root(sb)
    sb.sync.run("sleep 1000 & (setsid nohup sleep 1002 >/dev/null 2>&1 &); true")
    sb.sync.close()
    time.sleep(0.05)
    assert descendants(root) == []
    assert not Path(f"/proc/{root}").exists()
