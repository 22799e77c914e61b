"""A persistent bash session over pipes, shared by the ``bwrap`` and ``local`` backends.

The process tree is ``launcher (bwrap or nothing) -> sh loop -> bash``. The small ``sh`` loop
restarts bash when it exits (``exit`` typed by the model, a shell killed by the OOM killer or by
a timeout) and prints a marker, so the sandbox and its workspace survive a dead shell.

Each command is one line on bash's stdin: ``{ eval '<command>'; } </dev/null`` followed by
``printf`` of a random per-command marker and the exit status on stdout and on stderr. The
reader keeps at most ``output_bytes`` of each stream and discards the rest while it looks for
the markers, so endless output costs no memory. Commands never read the session's stdin
(``</dev/null``); only ``head -c N`` in ``import_tar`` does, for exactly N bytes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from toolgym.envs.shell.procs import descendants, kill_all, tree_of
from toolgym.envs.shell.sandbox import CommandResult, SandboxError, _q

_MAX_DISCARD = 256 * 2**20
"""Past this many discarded bytes a command counts as a runaway writer and is stopped."""
_RESPAWN = "__tg_respawn__"


def loop_script(token: str) -> str:
    """The ``sh`` loop that keeps one bash alive and reports each restart with ``token``."""
    return (
        "while :; do bash --noprofile --norc; "
        f"printf '\\n{_RESPAWN}{token} %d\\n' $?; printf '\\n{_RESPAWN}{token}\\n' >&2; done"
    )


class _Stream:
    """Collects one pipe's bytes up to a cap while looking for an end marker."""

    _HOLD = 64  # bytes held back so that a marker split across two reads is still found

    def __init__(self, cap: int | None):
        self.cap = cap
        self.kept = bytearray()
        self.dropped = 0
        self.pending = b""
        self.tail = b""  # from the marker on, once found

    def feed(self, chunk: bytes, markers: Sequence[bytes]) -> bytes | None:
        """Add ``chunk``; return the marker once one shows up (``tail`` then starts with it)."""
        self.pending += chunk
        hits = [(self.pending.find(m), m) for m in markers]
        hits = [(at, m) for at, m in hits if at >= 0]
        if hits:
            at, marker = min(hits)
            self._keep(self.pending[:at])
            self.tail, self.pending = self.pending[at:], b""
            return marker
        if len(self.pending) > self._HOLD:
            self._keep(self.pending[: -self._HOLD])
            self.pending = self.pending[-self._HOLD:]
        return None

    def _keep(self, data: bytes) -> None:
        room = len(data) if self.cap is None else max(0, self.cap - len(self.kept))
        self.kept += data[:room]
        self.dropped += len(data) - min(room, len(data))


class BashSession:
    """One bash session inside a launched process tree.

    Args:
        argv: Command that ends by running ``sh -c loop_script(token)`` (e.g. under bwrap).
        token: The random token passed to ``loop_script``.
        init: Bash run at start and after each restart (``cd``, ``umask``...).
        preexec: Run in the child before exec (cgroup entry, rlimits); None for none.
        env: Environment of the launched process.
        pass_fds: File descriptors the launched process inherits (bwrap's --ro-bind-data).
        cwd: Working directory of the launched process.
        members: Pids of every process of the sandbox (its cgroup), so that finding them does
            not scan all of /proc; None: walk /proc from the launched process.
    """

    def __init__(
        self, argv: list[str], token: str, init: str, preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = (), cwd: str | None = None,
        members: Callable[[], list[int]] | None = None,
    ):
        self.members = members
        self.argv, self.token, self.init = argv, token, init
        self.preexec, self.env, self.pass_fds, self.cwd = preexec, env, pass_fds, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._streams: dict[int, _Stream] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._markers: dict[int, list[bytes]] = {}
        self._found: dict[int, bytes] = {}
        self._pending_init = False
        self._runaway = False
        self._lock: asyncio.Lock | None = None
        self.loop_pid = -1
        self._respawn = f"{_RESPAWN}{token}".encode()

    @property
    def pid(self) -> int:
        """Host pid of the launched process (bwrap, or the sh loop for ``local``)."""
        if self.proc is None:
            raise SandboxError("the session was never started")
        return self.proc.pid

    async def start(self, timeout_s: float = 30.0) -> None:
        """Launch the process tree and wait for the first shell to answer."""
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, preexec_fn=self.preexec, start_new_session=True, close_fds=True,
                pass_fds=self.pass_fds, cwd=self.cwd,
            )
        except OSError as exc:
            hint = " (each live sandbox holds 3 pipes: raise the open-files limit, e.g. `ulimit -n 65536`)" if exc.errno == errno.EMFILE else ""
            raise SandboxError(f"could not launch {self.argv[0]!r}: {exc}{hint}") from exc
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
        result = await self.execute(self.init + "\ntrue", timeout_s)
        # Found once, before any command of the model runs: later, orphans of the model's
        # processes may also be named sh or bash, but only the loop's child is the session shell.
        tree = self._tree()
        self.loop_pid = next((pid for pid, _, argv0 in tree if argv0 == "/bin/sh"), self.proc.pid)
        if result.exit_code != 0:
            detail = (result.stderr or result.note or "no output").strip()[:500]
            await self.stop()
            raise SandboxError(f"the sandbox shell did not start ({' '.join(self.argv[:1])}): {detail}")

    async def execute(self, script: str, timeout_s: float, cap: int | None = None, stdin_data: bytes = b"", on_timeout: Callable[[], Any] | None = None) -> CommandResult:
        """Run ``script`` (already bash source) and collect its output up to ``cap`` bytes a stream.

        On timeout ``on_timeout`` (default: kill every process in the tree but the shell's
        ancestors) runs; if the shell is itself stuck it is killed and restarted with a note.
        Calls are serialized: a caller that gave up waiting cannot interleave two commands.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._execute(script, timeout_s, cap, stdin_data, on_timeout)

    async def restart_shell(self) -> None:
        """A fresh bash in the workspace: jobs killed, variables and cwd reset, files kept."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pending_init:  # nothing ran since the last restart: the shell is fresh already
                return
            self.kill_children()
            self.kill_shell()
            out, _ = await self._exchange(b"", [self._respawn], None, 10.0)
            if out is None:
                raise SandboxError("the sandbox shell did not restart")
            self._pending_init = True  # the next command runs init first, in the same round trip

    async def _execute(self, script: str, timeout_s: float, cap: int | None, stdin_data: bytes, on_timeout: Callable[[], Any] | None) -> CommandResult:
        if self.proc is None or self.proc.poll() is not None:
            raise SandboxError(f"the sandbox process has exited (status {self.proc.returncode if self.proc else None}){self._last_words()}")
        if self._pending_init:  # the loop restarted bash: run init in front of this command
            self._pending_init = False
            script = f"{self.init}\n{script}"
        nonce = secrets.token_hex(12)
        line = f"{{ {script}\n}}; __tg_rc=$?; builtin printf '%s %d\\n' {nonce} $__tg_rc; builtin printf '%s\\n' {nonce} >&2\n"
        start = time.monotonic()
        markers = [nonce.encode(), self._respawn]
        out, err = await self._exchange(line.encode() + stdin_data, markers, cap, timeout_s)
        note, timed_out = "", out is None
        if timed_out:
            (on_timeout or self.kill_children)()
            note = f"the command ran past its {timeout_s:g} s limit; its processes (background jobs included) were killed"
            out, err = await self._resume(markers, 1.0)
            if out is None:  # the shell itself was busy (a builtin loop): restart it
                self.kill_shell()
                out, err = await self._resume([self._respawn], 5.0)
                if out is None:
                    raise SandboxError("the sandbox shell did not restart after a timeout")
        return self._result(nonce, out, err, cap, start, note, timed_out)

    def _result(self, nonce: str, out: tuple[_Stream, bytes, bytes], err: tuple[_Stream, bytes, bytes], cap: int | None, start: float, note: str, timed_out: bool) -> CommandResult:
        (so, omark, orest), (se, _, _) = out, err
        exit_code: int | None = None
        rest = orest.decode(errors="replace").split("\n", 1)[0].split()
        if omark == nonce.encode() and rest and rest[0].lstrip("-").isdigit():
            exit_code = None if timed_out else int(rest[0])
        else:  # the shell exited or was killed; the loop started a new one
            for stream in (so, se):  # the loop's marker starts on a fresh line
                if stream.kept.endswith(b"\n"):
                    del stream.kept[-1:]
            why = f"exited with status {rest[0]}" if rest else "exited"
            note = (note + "; " if note else "") + f"the shell {why}; a new shell started in {self.init_cwd()} (files kept; variables, cwd and jobs reset)"
            self._pending_init = True
        if self._runaway:
            self._runaway = False
            note = (note + "; " if note else "") + f"output passed {_MAX_DISCARD // 2**20} MiB, so the command was stopped"
        dropped = so.dropped + se.dropped
        return CommandResult(
            stdout=_text(so, "stdout"), stderr=_text(se, "stderr"), exit_code=exit_code, timed_out=timed_out,
            truncated=dropped > 0, duration_s=round(time.monotonic() - start, 6), note=note,
        )

    def _last_words(self) -> str:
        """What a dead launcher wrote to stderr (e.g. bwrap's own error), for the error message."""
        try:
            said = os.read(self.proc.stderr.fileno(), 4096).decode(errors="replace").strip()  # type: ignore[union-attr]  # the process is started with PIPE streams
        except (OSError, ValueError, AttributeError):
            return ""
        return f": {said[-500:]}" if said else ""

    def init_cwd(self) -> str:
        """Where a restarted shell starts (for notes)."""
        return self.init.split("cd ", 1)[1].split(";", 1)[0].strip("'") if "cd " in self.init else "the workspace"

    # ------------------------------------------------------------------ pipes

    async def _exchange(self, data: bytes, markers: list[bytes], cap: int | None, timeout_s: float) -> tuple[Any, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        loop = asyncio.get_running_loop()
        self._streams = {fd: _Stream(cap) for fd in (self.proc.stdout.fileno(), self.proc.stderr.fileno())}  # type: ignore[union-attr]  # the process is started with PIPE streams
        self._found = {}
        self._markers = {fd: markers for fd in self._streams}
        self._waiter = loop.create_future()
        for fd in self._streams:
            loop.add_reader(fd, self._on_readable, fd)
        deadline = loop.time() + timeout_s
        try:
            await asyncio.wait_for(self._write(data), timeout_s)
            await asyncio.wait_for(asyncio.shield(self._waiter), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None, None
        finally:
            for fd in self._streams:
                loop.remove_reader(fd)
        return self._collected()

    async def _resume(self, markers: list[bytes], wait_s: float) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        self._markers = {fd: markers for fd in self._streams}
        self._found = {fd: hit for fd, hit in self._found.items() if hit in markers}
        if len(self._found) == len(self._streams):
            return self._collected()
        self._waiter = loop.create_future()
        for fd in self._streams:
            loop.add_reader(fd, self._on_readable, fd)
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), wait_s)
        except TimeoutError:
            return None, None
        finally:
            for fd in self._streams:
                loop.remove_reader(fd)
        return self._collected()

    def _collected(self) -> tuple[Any, Any]:
        parts = []
        for fd, stream in self._streams.items():
            marker = self._found[fd]
            rest = stream.tail[len(marker):]
            parts.append((stream, marker, rest.lstrip(b" ")))
        return parts[0], parts[1]

    def _on_readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        waiter = self._waiter
        if not chunk:  # EOF: the whole sandbox is gone
            asyncio.get_running_loop().remove_reader(fd)
            if waiter is not None and not waiter.done():
                said = b"".join(bytes(st.kept) + st.pending for st in self._streams.values()).decode(errors="replace").strip()
                waiter.set_exception(SandboxError(
                    f"the sandbox process exited unexpectedly (status {self.proc.poll() if self.proc else None})"
                    + (f": {said[-500:]}" if said else "")
                ))
            return
        if fd in self._found:
            return
        stream = self._streams[fd]
        hit = stream.feed(chunk, self._markers[fd])
        if hit is not None:
            self._found[fd] = hit
            if len(self._found) == len(self._streams) and waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif stream.dropped > _MAX_DISCARD and waiter is not None and not waiter.done():
            self._runaway = True
            stream.dropped -= 1  # report once, not per chunk
            self.kill_children()  # a runaway writer: stop it now rather than at the deadline

    async def _write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, _set_done, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
            except BrokenPipeError as exc:
                raise SandboxError("the sandbox shell closed its input (the sandbox died)") from exc

    # ------------------------------------------------------------------ processes

    def shell_pid(self) -> int | None:
        """Host pid of the current session bash: the shallowest ``bash`` of the tree, or None."""
        return self._shell_of(self._tree())

    def kill_children(self) -> None:
        """SIGKILL every process of the tree except the shell and its ancestors.

        Repeated until none is left, because a fork bomb keeps forking between two passes.
        """
        for _ in range(50):
            if not self._kill_pass():
                return
            time.sleep(0.002)

    def _kill_pass(self) -> int:
        tree = self._tree()
        shell = self._shell_of(tree)
        parents = {p: pp for p, pp, _ in tree}
        keep = {self.pid}
        for start in (shell, self.loop_pid):
            node = start
            while node is not None and node not in keep:
                keep.add(node)
                node = parents.get(node)
        victims = [p for p, _, _ in tree if p not in keep]
        kill_all(victims)
        return len(victims)

    def _tree(self) -> list[tuple[int, int, str]]:
        """(pid, ppid, argv0) of every process under the launched one, parents first."""
        if self.members is not None:
            try:
                return tree_of(self.pid, self.members())
            except OSError:
                pass
        return descendants(self.pid)

    def _shell_of(self, tree: list[tuple[int, int, str]]) -> int | None:
        return next((pid for pid, ppid, argv0 in tree if ppid == self.loop_pid and argv0 == "bash"), None)

    def kill_shell(self) -> None:
        """SIGKILL the bash session itself (the sh loop starts a new one)."""
        pid = self.shell_pid()
        if pid is not None:
            kill_all([pid])

    async def stop(self) -> None:
        """Kill the whole tree and reap the launched process (idempotent)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            tree = [p for p, _, _ in self._tree()]
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            kill_all(tree)
        loop = asyncio.get_running_loop()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                # Unregister before closing: a closed fd left in the selector could later
                # alias a new sandbox's pipe with the same number.
                loop.remove_reader(pipe.fileno())
                loop.remove_writer(pipe.fileno())
                pipe.close()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _text(stream: _Stream, name: str) -> str:
    text = bytes(stream.kept).decode("utf-8", errors="replace")
    if stream.dropped:
        text += f"\n[... {name} truncated: {stream.dropped} more bytes not shown ...]\n"
    return text


def quote(text: str) -> str:
    """Single-quote ``text`` for bash (re-exported for backends)."""
    return _q(text)
