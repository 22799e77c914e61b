"""The docker backend's own commands, each a fresh ``docker exec`` the model cannot reach.

Why not the model's bash session: anything typed into it can be redefined by the model (a
function named ``tar``, ``BASH_ENV``, an exported ``python3``), and any marker it prints can be
forged. Every harness command here is instead a new process started by dockerd with an empty
environment (``/usr/bin/env -i``), absolute paths to binaries of the read-only image, its
arguments passed as argv (never spliced into shell text) and its own output stream.

Who runs them. Model processes are uid ``MODEL_UID`` (1000) with no capabilities and
``no-new-privileges``. Harness commands run as the container's root, which ``dockerd
--userns-remap`` maps to an unprivileged host uid; the container's capability set is only what
the harness needs (read every file, kill, hand files back to the model's uid). A uid-1000 process
cannot signal, ptrace or read the memory of a root process, so it cannot tamper with one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from toolgym.envs.shell.protocol import SHELL_PATH, shell_environment
from toolgym.envs.shell.sandbox import WORKSPACE, PathOutsideWorkspace, SandboxError, _q

MODEL_UID = 1000
"""The uid (and gid) of the model's shell and of every process it starts."""
MODEL_USER = f"{MODEL_UID}:{MODEL_UID}"
HARNESS_USER = "0:0"
"""Root of the container: an unprivileged host uid under ``--userns-remap``."""
HARNESS_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "KILL", "SETUID", "SETGID"]
"""What the harness needs (read mode-000 files, kill model processes, drop to the model's uid).
Only uid-0 processes hold them; the model's uid gets none and cannot gain any (no-new-privileges)."""
SCRATCH = "/run/toolgym"
"""The harness's own tmpfs (mode 0700, root): no model process can read or write it."""
CLEAN = ["/usr/bin/env", "-i", f"PATH={SHELL_PATH}", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"]
"""Prefix of every harness command: no variable of anyone else's reaches it."""
AS_MODEL = ["/usr/bin/setpriv", f"--reuid={MODEL_UID}", f"--regid={MODEL_UID}", "--clear-groups", "--"]
"""Drop from the harness's root to the model's uid (for files the model must own)."""
MODEL_HOME = "/tmp"
"""The model's ``$HOME`` (the workspace would collect dotfiles into the digest)."""
CHECK_ENV = " ".join(_q(f"{k}={v}") for k, v in sorted(shell_environment(home=MODEL_HOME).items()))
"""The environment of a check run outside the session: the model shell's, task clock included."""

# Kill every process of the model's uid, whatever its name, until none is left. $1 names one pid
# to spare (the session shell, when a restore keeps it), stopped first so that nothing it runs
# (a trap, say) acts meanwhile; the caller continues it. Builtins only (no fork per pass), so a
# fork bomb holding every pid cannot starve it: each pass kills all that exists, children forked
# during a pass die in the next. Zombies are skipped (init or the stopped shell reaps them).
_KILL_FN = rf"""
keep=${{1:-none}}
[ "$keep" = none ] || kill -STOP "$keep" 2>/dev/null
tg_kill_model() {{
for i in {{1..200}}; do
  left=0
  for d in /proc/[0-9]*; do
    p=${{d#/proc/}}
    [ "$p" = "$keep" ] && continue
    uid= state=
    while read -r k v _; do
      case $k in State:) state=$v ;; Uid:) uid=$v; break ;; esac
    done 2>/dev/null < "$d/status"
    [ "$uid" = {MODEL_UID} ] && [ "$state" != Z ] || continue
    kill -9 "$p" 2>/dev/null && left=1
  done
  [ "$left" = 0 ] && break
done
[ "$left" = 0 ] || {{ echo "tg:unkillable model processes remain" >&2; return 1; }}
}}
"""
KILL_MODEL = _KILL_FN + "tg_kill_model\n"

# Every writable place but the workspace: /tmp (also $HOME), /dev/shm, POSIX message queues and
# System V IPC objects (they outlive their processes). Run after KILL_MODEL.
WIPE_SCRATCH = rf"""
/usr/bin/find /tmp /dev/shm /dev/mqueue -mindepth 1 -maxdepth 1 -exec /bin/rm -rf -- {{}} + 2>/dev/null
{" ".join(AS_MODEL)} /usr/bin/ipcrm --all 2>/dev/null  # the owner may remove them; root here may not
left=$(/usr/bin/find /tmp /dev/shm /dev/mqueue -mindepth 1 -maxdepth 1 | /usr/bin/head -c 200)
[ -z "$left" ] || {{ echo "tg:could not wipe: $left" >&2; exit 1; }}
"""

# $1 = the path asked for. Resolves symlinks on the way (realpath -m) and refuses anything that
# ends outside the workspace; prints the resolved path on stdout is not needed: scripts use $p.
_RESOLVE = rf"""
p=$(/usr/bin/realpath -m -- "$1") || exit 2
case "$p" in {WORKSPACE}|{WORKSPACE}/*) ;; *) echo tg:outside >&2; exit 3;; esac
"""
READ_FILE = _RESOLVE + r"""
[ -e "$p" ] || { echo tg:missing >&2; exit 4; }
[ -d "$p" ] && { echo tg:isdir >&2; exit 5; }
[ -f "$p" ] || { echo "tg:notfile it is a $(/usr/bin/stat -c %F -- "$p")" >&2; exit 8; }
exec /usr/bin/head -c "$2" -- "$p"
"""
# $1 = bytes kept per file, then the paths asked for and their resolved full paths, in pairs.
# One record per path: "<bytes> <ok or the tg: reason>\n" and the bytes (the catalog's expected
# files in one exec, instead of one exec each). Each file goes through a root-only scratch file
# so its size is known before it is sent.
READ_FILES = rf"""
cap=$1; shift; f={SCRATCH}/read.$$
trap '/bin/rm -f "$f"' EXIT
while [ $# -ge 2 ]; do
  p=$(/usr/bin/realpath -m -- "$2") || p=/nonexistent; shift 2
  case "$p" in {WORKSPACE}|{WORKSPACE}/*) ;; *) printf '0 tg:outside\n'; continue;; esac
  if [ ! -e "$p" ]; then printf '0 tg:missing\n'
  elif [ -d "$p" ]; then printf '0 tg:isdir\n'
  elif [ ! -f "$p" ]; then printf '0 tg:notfile it is a %s\n' "$(/usr/bin/stat -c %F -- "$p")"
  elif /usr/bin/head -c "$cap" -- "$p" > "$f"; then printf '%s ok\n' "$(/usr/bin/stat -c %s -- "$f")"; /bin/cat -- "$f"
  else printf '0 tg:unreadable\n'
  fi
done
"""
# Runs as the model's uid, so that files it writes are the model's (and a mode-000 file refuses).
WRITE_FILE = _RESOLVE + r"""
[ -d "$p" ] && { echo tg:isdir >&2; exit 5; }
if [ -e "$p" ] || [ -L "$p" ]; then [ -f "$p" ] || { echo "tg:notfile it is a $(/usr/bin/stat -c %F -- "$p")" >&2; exit 8; }; fi
/bin/mkdir -p -- "$(/usr/bin/dirname -- "$p")" || exit 6
/bin/cat > "$p" || exit 9
n=$(/usr/bin/stat -c %s -- "$p")
[ "$n" = "$2" ] || { echo "tg:short wrote $n of $2 bytes" >&2; exit 10; }
"""
# One NUL-terminated record per entry: the type of the target (symlinks followed, as `ls -L`
# would; N for a dangling link), a tab, the name as raw bytes.
LIST_DIR = _RESOLVE + r"""
[ -e "$p" ] || { echo tg:missing >&2; exit 4; }
[ -d "$p" ] || { echo tg:notdir >&2; exit 7; }
cd -- "$p" && exec /usr/bin/find . -mindepth 1 -maxdepth 1 -printf '%Y\t%P\0'
"""
# GNU format with --sparse: a sparse file travels as its data and a hole map (a 1 TiB file of
# holes is a few KiB); --sort=name: the same workspace gives the same bytes. Sockets cannot be
# archived (tar says "socket ignored"); their listener is gone at the next reset anyway.
EXPORT = rf"""
cd {WORKSPACE} && /bin/tar --numeric-owner --sparse --format=gnu --sort=name -cf - .
rc=$?; [ "$rc" -le 1 ] || exit "$rc"  # 1: a file changed while read (a live job), still archived
"""
# $1 = the session shell's pid (kept, stopped meanwhile) or "none". Kills every other model
# process (so no job writes into the workspace being restored), wipes the workspace as root
# (mode-000 directories included), then extracts as the model's uid, so the model owns its files
# and modes (setuid bits too) come back exactly as archived.
_EXTRACT = rf"""
trap '[ "$keep" = none ] || /bin/kill -CONT "$keep" 2>/dev/null' EXIT
/usr/bin/find {WORKSPACE} -mindepth 1 -maxdepth 1 -exec /bin/rm -rf -- {{}} + || exit 1
{" ".join(AS_MODEL)} /bin/tar -C {WORKSPACE} --no-same-owner --preserve-permissions -xf -
"""
IMPORT = _KILL_FN + "tg_kill_model || exit 1\n" + _EXTRACT
# A new episode in one exec (``Sandbox.reset_to``): every model process killed (the session shell
# too: $1 = "none"), every writable place wiped, the archive on stdin extracted.
RESET_TO = _KILL_FN + "tg_kill_model || exit 1\n" + WIPE_SCRATCH + _EXTRACT
# A check of the task, outside the model's session: $1 = the session shell (spared, stopped
# meanwhile) or "none", $2 = seconds, $3 = the command, $4 = bytes of output kept. Every other
# model process is killed before (nothing the model left running can touch the check) and after
# (nothing the check started outlives it). The check runs as the model's uid in a clean
# environment in the workspace; the workspace is copied first (cp -a: modes, owners, links,
# holes, FIFOs) to a root-only tmpfs and put back after, so the check cannot change it. Its output goes to root-only files, so the first line of
# stdout (exit status and stdout size) and this script's exit status are the harness's alone.
RUN_ISOLATED = _KILL_FN + rf"""
trap '[ "$keep" = none ] || /bin/kill -CONT "$keep" 2>/dev/null; /bin/rm -rf {SCRATCH}/ws {SCRATCH}/out {SCRATCH}/err' EXIT
tg_kill_model || exit 1
mode=$(/usr/bin/stat -c %a {WORKSPACE}) && /bin/mkdir {SCRATCH}/ws && /bin/cp -a {WORKSPACE}/. {SCRATCH}/ws/ || exit 1
cd {WORKSPACE} || exit 1
/usr/bin/timeout -s KILL "$2" {" ".join(AS_MODEL)} /usr/bin/env -i {CHECK_ENV} \
    /bin/bash --noprofile --norc -c "$3" </dev/null >{SCRATCH}/out 2>{SCRATCH}/err
rc=$?
cd / && tg_kill_model || exit 1
/usr/bin/find {WORKSPACE} -mindepth 1 -maxdepth 1 -exec /bin/rm -rf -- {{}} + || exit 1
/bin/cp -a {SCRATCH}/ws/. {WORKSPACE}/ && /bin/chmod "$mode" {WORKSPACE} || exit 1
printf '%s %s %s\n' "$rc" "$(/usr/bin/stat -c %s {SCRATCH}/out)" "$(/usr/bin/stat -c %s {SCRATCH}/err)"
/usr/bin/head -c "$4" {SCRATCH}/out
/usr/bin/head -c "$4" {SCRATCH}/err >&2
"""


@dataclass
class ExecResult:
    """What one harness exec produced."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    """None when it ran past its time limit."""

    def why(self) -> str:
        """The first line of stderr (the ``tg:...`` reason), or the exit code."""
        text = self.stderr.decode("utf-8", "replace").strip()
        return text[:300] or f"exit code {self.exit_code}"


async def run_exec(client: Any, container_id: str, argv: list[str], *, user: str = HARNESS_USER,
                   stdin: bytes | None = None, timeout_s: float = 120.0, workdir: str = "/",
                   cap: int = 1 << 31) -> ExecResult:
    """Run ``argv`` as a fresh process in the container and collect its output (at most ``cap`` bytes).

    Raises:
        SandboxError: dockerd refused the exec (the container is gone, or its pids limit is full).
    """

    def go() -> ExecResult:
        api = client.api
        exec_id = api.exec_create(container_id, argv, stdin=stdin is not None, user=user, workdir=workdir)["Id"]
        stream = api.exec_start(exec_id, socket=True)  # kept referenced: its GC would close the socket
        sock = stream._sock
        # Input goes in from a second thread while output is read: a command that stops reading
        # (a full disk) ends, its output ends, and the unsent rest of the input is dropped.
        sender = None
        if stdin is not None:
            sender = threading.Thread(target=_send_all, args=(sock, stdin), daemon=True)
            sender.start()
        try:
            out, err, finished = _read_all(sock, time.monotonic() + timeout_s, cap)
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a sender blocked on a command that stopped reading
            sock.close()
        if sender is not None:
            sender.join(5.0)
        if not finished:
            return ExecResult(out, err, None)
        info = api.exec_inspect(exec_id)
        return ExecResult(out, err, info.get("ExitCode") if not info.get("Running") else None)

    try:
        return await asyncio.to_thread(go)
    except Exception as exc:  # APIError (container gone, exec refused), socket errors
        raise SandboxError(f"docker exec {argv[-1][:60] if argv else ''!r} failed: {str(exc)[:300]}") from exc


async def run_script(client: Any, container_id: str, script: str, *args: str, user: str = HARNESS_USER,
                     stdin: bytes | None = None, timeout_s: float = 120.0) -> ExecResult:
    """Run a bash ``script`` (with positional ``args``) as a clean harness process."""
    argv = [*CLEAN, "/bin/bash", "--noprofile", "--norc", "-c", script, "tg", *args]
    return await run_exec(client, container_id, argv, user=user, stdin=stdin, timeout_s=timeout_s)


def checked_path(full: str) -> str:
    """``full`` if it can travel to the container as text (UTF-8), else a ValueError for the model."""
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"path {full!r} is not valid UTF-8; name files with UTF-8 text") from None
    return full


def file_error(path: str, reason: str) -> Exception:
    """The exception a file tool raises for a harness refusal (``tg:<key> ...`` on stderr)."""
    key = reason.removeprefix("tg:").split(None, 1)[0] if reason.startswith("tg:") else ""
    detail = reason.partition(" ")[2]
    errors: dict[str, Exception] = {
        "outside": PathOutsideWorkspace(f"{path!r} leads outside the workspace through a symlink"),
        "missing": FileNotFoundError(f"no such file or directory: {path!r}"),
        "isdir": IsADirectoryError(f"{path!r} is a directory; use list_dir"),
        "notdir": NotADirectoryError(f"{path!r} is not a directory"),
        "notfile": OSError(f"{path!r} is not a regular file ({detail}); only regular files can be read or written"),
        "short": OSError(f"{path!r}: the write did not complete ({detail}); the disk may be full"),
    }
    return errors.get(key, OSError(f"{path!r}: {reason[:300]}"))


def parse_reads(out: bytes, paths: list[str]) -> dict[str, str | Exception]:
    """``READ_FILES``' records as each path's text, or the exception ``read_file`` would raise."""
    result: dict[str, str | Exception] = {}
    pos = 0
    for path in paths:
        end = out.index(b"\n", pos)
        size, _, reason = out[pos:end].decode("utf-8", "replace").partition(" ")
        pos = end + 1 + int(size)
        result[path] = out[end + 1 : pos].decode("utf-8", "replace") if reason == "ok" else file_error(path, reason)
    return result


def parse_listing(out: bytes) -> list[str]:
    """The names of ``LIST_DIR``'s records, sorted by their bytes, directories with a ``/``;
    bytes that are not UTF-8 show as ``\\xHH``."""
    names = []
    for record in out.split(b"\0"):
        if record:
            kind, _, raw = record.partition(b"\t")
            names.append(raw + b"/" if kind == b"d" else raw)
    return [name.decode("utf-8", "backslashreplace") for name in sorted(names)]


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            sent = sock.send(view[: 1 << 20])
            view = view[sent:]
        sock.shutdown(socket.SHUT_WR)  # the command needs its end of input
    except OSError:
        pass  # the command ended without reading it all (closed socket); its exit code says why


def _read_all(sock: socket.socket, deadline: float, cap: int) -> tuple[bytes, bytes, bool]:
    """Both demultiplexed streams of an exec socket up to EOF (True) or the deadline (False)."""
    chunks: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    def sink(stream: int) -> Any:
        def feed(data: bytes) -> None:
            buf = chunks[stream]
            if len(buf) < cap:
                buf += data[: cap - len(buf)]
        return feed

    sinks = {1: sink(1), 2: sink(2)}
    rest = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(chunks[1]), bytes(chunks[2]), False
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            return bytes(chunks[1]), bytes(chunks[2]), False
        if not data:
            return bytes(chunks[1]), bytes(chunks[2]), True
        rest = frames(rest + data, sinks)


def frames(buf: bytes, sinks: dict[int, Any]) -> bytes:
    """Hand each complete Docker stream frame in ``buf`` to its sink; return the incomplete rest.

    A frame is a stream id (1 stdout, 2 stderr), three pad bytes, a big-endian size, the payload.
    """
    at = 0
    while len(buf) - at >= 8:
        size = struct.unpack_from(">I", buf, at + 4)[0]
        if len(buf) - at < 8 + size:
            break
        sinks.get(buf[at], sinks[2])(buf[at + 8 : at + 8 + size])
        at += 8 + size
    return buf[at:]
