"""The persistent bash session of a Docker sandbox, spoken over an attached exec's socket.

Protocol. Every command goes to bash as one line: the command as a ``$'...'`` word with every
byte but plain ones escaped (so no quoting, newline, heredoc or syntax error of the model's can
desynchronise the session, and nothing is forked to decode it), sourced in the shell itself
from a here-string (so ``cd`` and variables persist) with stdin from ``/dev/null``, then a line carrying a random
per-command marker and the exit status on stdout, and the marker alone on stderr. The
reader demultiplexes Docker's stream frames and stops when both markers have arrived.

Timeouts. Each shell starts one watchdog (a bash function in the background) that reads a
private FIFO: the shell writes ``arm <seconds>`` before a command and ``off`` after it, then
waits for the watchdog's ``ok`` on a second FIFO (so a kill in progress never reaches the next
command); all builtins, so no process is forked per command. When ``off`` does not come in time (``read -t``)
the watchdog SIGKILLs every process of the model's uid but the shell and itself, with the
``kill`` builtin only, so a fork bomb holding every pid cannot starve it. That
kills the command's whole process tree, its background jobs and any orphans, and the shell
goes on with its directory and variables. If the shell itself is the culprit (a builtin
``while :; do :; done``), the host side restarts the session after a grace period and says so.

This session is the model's alone: the model may redefine every function here, which only
changes what it sees of its own commands. The harness never types into it (see
``toolgym.envs.shell.docker_harness``), and a restart is a new process started by dockerd after
every model process is killed, never an ``exec`` inside the old shell.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from toolgym.envs.shell.docker_harness import MODEL_USER, frames
from toolgym.envs.shell.sandbox import WORKSPACE, CommandResult, SandboxError

GRACE_S = 3.0
"""How long past the deadline the host waits for the watchdog before restarting the shell."""
TRUNCATION_MARKER = "\n[... output truncated: {cut} more bytes not shown ...]"

# Kill every process of the model's uid but the shell, until none is left (root's are out of reach).
_KILL_ALL = r"""
__tg_killall() {
  local i p n
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    n=0
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      case " $__tg_keep $BASHPID " in *" $p "*) continue ;; esac
      kill -9 "$p" 2>/dev/null && n=$((n + 1))
    done
    [ "$n" = 0 ] && break
  done
}
"""
_PRELUDE = _KILL_ALL + r"""
__tg_watchdog() {
  local cmd t
  while read -r -u "$__tg_fd" cmd t; do
    [ "$cmd" = arm ] || continue
    if ! read -r -t "$t" -u "$__tg_fd" cmd t; then
      __tg_killall
      read -r -u "$__tg_fd" cmd t
    fi
    printf 'ok\n' >&"$__tg_ack"
  done
}
__tg_start_watchdog() {
  # A new watchdog must not inherit an old one's unread "arm" or "ok": drain both FIFOs first.
  while read -r -t 0.001 -u "$__tg_fd" _; do :; done
  while read -r -t 0.001 -u "$__tg_ack" _; do :; done
  __tg_watchdog >/dev/null 2>&1 & __tg_wd=$!
  disown $__tg_wd
}
__tg_disarm() {
  if kill -0 "$__tg_wd" 2>/dev/null; then
    printf 'off\n' >&"$__tg_fd"
    # Wait until the watchdog has finished any kill, so it cannot hit the next command.
    read -r -t 5 -u "$__tg_ack" _ && return
    kill -9 "$__tg_wd" 2>/dev/null
  fi
  __tg_start_watchdog  # the command killed it (e.g. kill -9 -1)
}
__tg_fifo=/tmp/.tg_fifo_$$
mkfifo "$__tg_fifo" "$__tg_fifo.ack" && exec {__tg_fd}<>"$__tg_fifo" {__tg_ack}<>"$__tg_fifo.ack" && rm -f "$__tg_fifo" "$__tg_fifo.ack"
__tg_keep="$$"
__tg_start_watchdog
cd /workspace
printf '%s' "$$"
"""


_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _-.,/:=+@%")


def ansi_c_quote(text: str) -> str:
    """``text`` as a bash ``$'...'`` word with every other byte as ``\\xHH``: one line, no fork to decode.

    >>> ansi_c_quote("echo 'hi'\\n")
    "$'echo \\\\x27hi\\\\x27\\\\x0a'"
    """
    data = text.encode("utf-8", "surrogateescape")
    return "$'" + "".join(chr(b) if b in _PLAIN else f"\\x{b:02x}" for b in data) + "'"


_DISARM = "__tg_disarm; "


class _Stream:
    """One demultiplexed stream: keeps the first ``cap`` bytes and finds the end marker."""

    def __init__(self, cap: int, marker: re.Pattern[bytes]):
        self.cap, self.marker = cap, marker
        self.head = bytearray()
        self.window = bytearray()  # the last bytes seen, contiguous, to find the marker
        self.total = 0
        self.end: int | None = None  # absolute offset where the marker starts
        self.match: re.Match[bytes] | None = None

    def feed(self, data: bytes) -> None:
        if self.end is not None:
            return  # output after the marker (a late background job) is dropped
        if len(self.head) < self.cap:
            self.head += data[: self.cap - len(self.head)]
        self.total += len(data)
        self.window += data
        found = self.marker.search(self.window)
        if found:
            self.end, self.match = self.total - len(self.window) + found.start(), found
        elif len(self.window) > 4096:
            del self.window[:-256]

    def text(self) -> tuple[str, bool]:
        """The output before the marker (capped), and whether some was cut."""
        size = self.total if self.end is None else self.end
        kept = bytes(self.head[: min(size, self.cap)]).decode("utf-8", "replace")
        if size > self.cap:
            return kept + TRUNCATION_MARKER.format(cut=size - self.cap), True
        return kept, False


class DockerSession:
    """The model's bash process in a container, running one command at a time.

    Args:
        client: The ``docker.DockerClient``.
        container: The container to run bash in.
        env: The shell's whole environment (nothing else reaches it).
        output_bytes: Bytes kept of stdout and of stderr per command.
        kill_model: Kills every model process (the sandbox's harness does it, outside this shell).
    """

    def __init__(self, client: Any, container: Any, env: dict[str, str], output_bytes: int,
                 kill_model: Callable[[], Awaitable[None]]):
        self.client, self.container, self.env, self.cap = client, container, env, output_bytes
        self.kill_model = kill_model
        self.sock: socket.socket | None = None
        self.stream: Any = None
        self.exec_id: str | None = None
        self.shell_pid: str | None = None
        """The shell's pid inside the container, as the fresh shell printed it before any model command."""
        self.pending = b""
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        """Start a fresh bash (a new process from dockerd, clean environment) and load the watchdog."""

        def attach() -> tuple[str, Any]:
            api = self.client.api
            argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in sorted(self.env.items())), "/bin/bash", "--noprofile", "--norc"]
            exec_id = api.exec_create(
                self.container.id, argv, stdin=True, stdout=True, stderr=True, tty=False, workdir=WORKSPACE, user=MODEL_USER,
            )["Id"]
            return exec_id, api.exec_start(exec_id, socket=True)

        try:
            self.exec_id, self.stream = await asyncio.to_thread(attach)
            # The SDK's wrapper holds the HTTP response; were it collected, the response would
            # close the socket under us (EBADF at a random time), so self.stream keeps it.
            sock = self.stream._sock
        except Exception as exc:  # the container is gone or dockerd failed: infrastructure
            raise SandboxError(f"could not attach a shell to the container: {str(exc)[:300]}") from exc
        sock.setblocking(False)
        self.sock = sock
        self.pending = b""
        result = await self._command(_PRELUDE, 30.0, raw=True)
        if result.exit_code is None or not result.stdout.isdigit():
            raise SandboxError(f"the container's shell did not start: {result.stderr[:300] or result.note}")
        self.shell_pid = result.stdout

    async def run(self, command: str, timeout_s: float) -> CommandResult:
        """Run one command (the sandbox has checked it is a non-empty string)."""
        async with self.lock:
            if self.sock is None:
                await self.open()
            return await self._command(command, timeout_s)

    async def _command(self, command: str, timeout_s: float, *, raw: bool = False, cap: int | None = None) -> CommandResult:
        if self.sock is None:
            raise SandboxError("the shell session is closed")
        nonce = b"__tg_end_" + secrets.token_hex(12).encode()
        body = f"eval {ansi_c_quote(command)}"
        if not raw:  # the watchdog guards model commands; the prelude needs none
            # Sourced from a here-string, not eval'd: bash 5.2 can corrupt its heap and abort at
            # the next command after an eval of text ending inside `$(` (seen: `x|$(`).
            body = f"printf 'arm %s\\n' {timeout_s:.3f} >&$__tg_fd; . /dev/fd/9 9<<<{ansi_c_quote(command)} </dev/null"
        line = (
            f"{body}\n__tg_rc=$?; {'' if raw else _DISARM}"
            f"printf '\\n%s %s\\n' {nonce.decode()} $__tg_rc; printf '\\n%s\\n' {nonce.decode()} >&2\n"
        )
        out = _Stream(cap or self.cap, re.compile(b"\n" + nonce + rb" (-?\d+)\n"))
        err = _Stream(cap or self.cap, re.compile(b"\n" + nonce + b"\n"))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        await loop.sock_sendall(self.sock, line.encode())
        eof = await self._read_until_markers(out, err, started + timeout_s + GRACE_S)
        duration = time.perf_counter() - started
        stdout, cut_out = out.text()
        stderr, cut_err = err.text()
        result = CommandResult(stdout=stdout, stderr=stderr, duration_s=duration, truncated=cut_out or cut_err)
        if out.match is not None and err.end is not None:
            result.exit_code = int(out.match.group(1))
            if duration >= timeout_s and not raw:
                result.exit_code, result.timed_out = None, True
                result.note = f"the command ran past its {timeout_s:g} s limit; its processes (background jobs included) were killed"
            return result
        result.timed_out = not eof
        if raw:  # the sandbox's own command failed: the caller decides (never a restart loop)
            return result
        status = None
        if eof and self.exec_id is not None:  # `exit N`: say N
            info = await asyncio.to_thread(self.client.api.exec_inspect, self.exec_id)
            status = None if info.get("Running") else info.get("ExitCode")
        await self.restart()
        why = f"exited with status {status}" if status is not None else "exited"
        if not eof:
            why = f"did not stop after its {timeout_s:g} s limit, so every process was killed"
        result.note = f"the shell {why}; a new shell started in {WORKSPACE} (files kept; variables, cwd and jobs reset)"
        return result

    async def _read_until_markers(self, out: _Stream, err: _Stream, deadline: float) -> bool:
        """Feed frames to the streams until both markers arrive (False) or the shell exits (True)."""
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        while out.end is None or err.end is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), left)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.pending = frames(self.pending + data, {1: out.feed, 2: err.feed})
        return False

    async def restart(self) -> None:
        """A fresh shell in the workspace: every model process is killed, then dockerd starts a new bash."""
        self.detach()
        await self.kill_model()
        await self.open()

    def detach(self) -> None:
        """Close the session's socket (bash reads EOF and exits)."""
        if self.sock is not None:
            self.sock.close()
        self.sock = self.stream = None
        self.shell_pid = None
