"""A persistent bash session over pipes, shared by the ``bwrap`` and ``local`` backends.

The process tree is ``launcher (bwrap or nothing) -> keeper -> bash``. The keeper is a small
``sh`` loop that starts one bash at a time, and only when the host says so:

* fd 4 (``go``): the host writes a random sync line there to ask for a shell. The keeper first
  reads the shell's stdin up to that same line, so whatever an earlier shell left unread (half a
  command) is thrown away and never runs in the new shell;
* fd 3 (``status``): when a bash exits, the keeper writes its exit status there.

Both fds are closed in bash, and the keeper is made non-dumpable by its launcher (bwrap: an
execute-only copy of ``sh``), so no process of the model can read or write them through
``/proc/1/fd``; nothing about them is on any command line. The model's shell itself only ever
runs the model's commands (the host's file tools, measurements and checks never use it).

Each command is one line on bash's stdin: ``{ eval '<command>' </dev/null; }`` followed by
``printf`` of a random per-command nonce and the exit status on stdout and on stderr. Only the
model's own result depends on those; forging one can only garble the model's own observation.
The reader keeps at most ``output_bytes`` of each stream and discards the rest while it looks
for the nonces, so endless output costs no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from toolgym.envs.shell.procs import descendants, kill_all, tree_of
from toolgym.envs.shell.protocol import (
    GO_FD,
    STATUS_FD,
    Stream,
    high_fd,
    read_some,
    set_done,
    stream_text,
)
from toolgym.envs.shell.sandbox import CommandResult, SandboxError

_MAX_DISCARD = 256 * 2**20
"""Past this many discarded bytes a command counts as a runaway writer and is stopped."""



class BashSession:
    """One bash session inside a launched process tree.

    Args:
        argv: Command that ends by running ``keeper_script()`` with ``sh -c`` (e.g. under bwrap).
        init: Bash run at the start of each new shell (``cd``, ``umask``...).
        preexec: Run in the child before exec (cgroup entry, privilege drop); None for none.
        env: Environment of the launched process.
        pass_fds: Further file descriptors the launched process inherits (bwrap's --ro-bind-data).
        cwd: Working directory of the launched process.
        members: Pids of every process of the sandbox (its cgroup), so that finding them does
            not scan all of /proc; None: walk /proc from the launched process.
        keeper: argv[0] of the keeper process, to find it in the tree; "" when the launched
            process is the keeper itself.
    """

    def __init__(
        self, argv: list[str], init: str, preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = (), cwd: str | None = None,
        members: Callable[[], list[int]] | None = None, keeper: str = "/bin/sh",
    ):
        self.argv, self.init, self.keeper = argv, init, keeper
        self.preexec, self.env, self.pass_fds, self.cwd, self.members = preexec, env, pass_fds, cwd, members
        self.proc: subprocess.Popen[bytes] | None = None
        self.loop_pid = -1
        self._status_fd = self._go_fd = -1
        self._status_buf = b""
        self._statuses: list[int] = []
        self._shell_alive = False
        self._pending_init = False
        self._prelude = ""
        self._runaway = False
        self._lock: asyncio.Lock | None = None

    @property
    def pid(self) -> int:
        """Host pid of the launched process (bwrap, or the keeper for ``local``)."""
        if self.proc is None:
            raise SandboxError("the session was never started")
        return self.proc.pid

    # ------------------------------------------------------------------ lifecycle

    async def start(self, timeout_s: float = 30.0) -> None:
        """Launch the process tree and wait for the first shell to answer."""
        status_r, status_w = os.pipe()
        go_r, go_w = os.pipe()
        child_ends = [high_fd(status_w), high_fd(go_r)]
        for fd in (status_w, go_r):
            os.close(fd)
        self._status_fd, self._go_fd = status_r, go_w
        extra, user_preexec = self.pass_fds, self.preexec

        def child() -> None:  # after fork: put the keeper's pipes at 3 and 4, keep the data fds
            os.dup2(child_ends[0], STATUS_FD)
            os.dup2(child_ends[1], GO_FD)
            for fd in extra:
                os.set_inheritable(fd, True)
            if user_preexec is not None:
                user_preexec()

        try:
            # close_fds=False: every fd of ours is close-on-exec (PEP 446); only 0-4 and the
            # data fds made inheritable above reach the launcher.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, preexec_fn=child, start_new_session=True, close_fds=False, cwd=self.cwd,
            )
        except OSError as exc:
            hint = " (each live sandbox holds 5 pipes: raise the open-files limit, e.g. `ulimit -n 65536`)" if exc.errno == errno.EMFILE else ""
            self._close_fds()
            raise SandboxError(f"could not launch {self.argv[0]!r}: {exc}{hint}") from exc
        finally:
            for fd in child_ends:
                os.close(fd)
        for fd in (self.proc.stdin.fileno(), self.proc.stdout.fileno(), self.proc.stderr.fileno(), self._status_fd, self._go_fd):  # type: ignore[union-attr]  # started with PIPE streams
            os.set_blocking(fd, False)
        await self._go()
        result = await self.execute("true", timeout_s)
        # Found once, before any command of the model runs: later a model process may carry any name.
        self.loop_pid = next((pid for pid, _, argv0 in self._tree() if argv0 == self.keeper), -1) if self.keeper else self.pid
        if result.exit_code != 0 or self.loop_pid < 0:
            detail = (result.stderr or result.note or "no output").strip()[:500]
            await self.stop()
            raise SandboxError(f"the sandbox shell did not start ({' '.join(self.argv[:1])}): {detail}")

    async def restart_shell(self, between: Callable[[], Any] | None = None, prelude: str = "") -> None:
        """A fresh bash: every process but the keeper killed, then ``between()`` (e.g. wiping
        /tmp), then a new shell with a clean environment; the next command runs ``init`` and
        ``prelude`` first (in the new shell, before anything of the model's exists)."""
        async with self._locked():
            self._prelude = prelude
            self._read_statuses()
            if self._pending_init and self._shell_alive:
                # Nothing ran since the last restart killed everything: the shell is fresh
                # (and may not even be started yet, so it must not be killed now).
                if between is not None:
                    between()
                return
            self.kill_all_but_keeper()
            if self._shell_alive:
                await self._await_status(5.0)
            for fd in self._out_fds():  # what the dead wrote after their last command (traps, jobs)
                while read_some(fd):
                    pass
            if between is not None:
                between()
            await self._go()

    async def execute(self, script: str, timeout_s: float, cap: int | None = None) -> CommandResult:
        """Run ``script`` (already bash source) and collect its output up to ``cap`` bytes a stream.

        On timeout every process but the shell and its ancestors is killed; a shell that is
        itself stuck is killed too and a fresh one started, with a note. Calls are serialized.
        """
        async with self._locked():
            return await self._execute(script, timeout_s, cap)

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _go(self) -> None:
        """Ask the keeper for a new shell, after throwing away anything left on its stdin."""
        sync = secrets.token_hex(16)
        try:
            os.write(self._go_fd, f"{sync}\n".encode())
        except OSError as exc:
            raise SandboxError(f"the sandbox keeper is gone ({exc.strerror}){self._last_words(wait_s=2.0)}") from exc
        await self._write(f"\n{sync}\n".encode())
        self._shell_alive, self._pending_init = True, True

    async def _execute(self, script: str, timeout_s: float, cap: int | None) -> CommandResult:
        if self.proc is None or self.proc.poll() is not None:
            raise SandboxError(f"the sandbox process has exited (status {self.proc.returncode if self.proc else None}){self._last_words()}")
        self._read_statuses()
        if not self._shell_alive:  # the model's last command ended its shell
            await self._go()
        if self._pending_init:
            self._pending_init, prelude, self._prelude = False, self._prelude, ""
            script = f"{self.init}\n{prelude}\n{script}" if prelude else f"{self.init}\n{script}"
        nonce = secrets.token_hex(12)
        line = f"{{ {script}\n}}; __tg_rc=$?; builtin printf '%s %d\\n' {nonce} $__tg_rc; builtin printf '%s\\n' {nonce} >&2\n"
        start = time.monotonic()
        streams = {fd: Stream(cap) for fd in self._out_fds()}
        done = await self._collect(streams, nonce.encode(), timeout_s, line.encode())
        note, timed_out = "", done is None
        if timed_out:
            self.kill_children()
            note = f"the command ran past its {timeout_s:g} s limit; its processes (background jobs included) were killed"
            done = await self._collect(streams, nonce.encode(), 0.5)
            if done is None:  # the shell itself was busy (a builtin loop): end it
                self.kill_shell()
                done = await self._collect(streams, nonce.encode(), 5.0)
                if done is None:
                    raise SandboxError("the sandbox shell did not end after a timeout")
        assert done is not None
        return self._result(streams, done, nonce, start, note, timed_out)

    def _result(self, streams: dict[int, Stream], exited: bool, nonce: str, start: float, note: str, timed_out: bool) -> CommandResult:
        so, se = streams.values()
        exit_code: int | None = None
        rest = so.tail[len(nonce):].decode(errors="replace").split()
        if not exited and rest and rest[0].lstrip("-").isdigit():
            exit_code = None if timed_out else int(rest[0])
        else:
            status = self._statuses.pop() if self._statuses else None
            why = f"exited with status {status}" if status is not None else "exited"
            note = (note + "; " if note else "") + f"the shell {why}; a new shell started in {self.init_cwd()} (files kept; variables, cwd and jobs reset)"
        if self._runaway:
            self._runaway = False
            note = (note + "; " if note else "") + f"output passed {_MAX_DISCARD // 2**20} MiB, so the command was stopped"
        dropped = so.dropped + se.dropped
        return CommandResult(
            stdout=stream_text(so, "stdout"), stderr=stream_text(se, "stderr"), exit_code=exit_code, timed_out=timed_out,
            truncated=dropped > 0, duration_s=round(time.monotonic() - start, 6), note=note,
        )

    def _last_words(self, wait_s: float = 0.0) -> str:
        """What a dead launcher wrote to stderr (e.g. bwrap's own error), for the error message.

        ``wait_s`` first lets a launcher that is dying finish: a closed pipe can be seen before
        its error message is written.
        """
        if wait_s and self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)
        try:
            said = os.read(self.proc.stderr.fileno(), 4096).decode(errors="replace").strip()  # type: ignore[union-attr]  # the process is started with PIPE streams
        except (OSError, ValueError, AttributeError):
            return ""
        return f": {said[-500:]}" if said else ""

    def init_cwd(self) -> str:
        """Where a restarted shell starts (for notes)."""
        return self.init.split("cd ", 1)[1].split(";", 1)[0].strip("'") if "cd " in self.init else "the workspace"

    # ------------------------------------------------------------------ pipes

    def _out_fds(self) -> list[int]:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        return [self.proc.stdout.fileno(), self.proc.stderr.fileno()]

    async def _collect(self, streams: dict[int, Stream], nonce: bytes, timeout_s: float, data: bytes = b"") -> bool | None:
        """Read until both streams show ``nonce`` (False) or the shell exits (True); None on timeout."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()

        def finish(value: bool | BaseException) -> None:
            if not waiter.done():
                waiter.set_exception(value) if isinstance(value, BaseException) else waiter.set_result(value)

        def on_out(fd: int) -> None:
            stream = streams[fd]
            if stream.found:
                return
            chunk = read_some(fd)
            if chunk is None:
                return
            if not chunk:  # EOF: the whole sandbox is gone
                loop.remove_reader(fd)
                said = b"".join(bytes(st.kept) + st.pending for st in streams.values()).decode(errors="replace").strip()
                said = f": {said[-500:]}" if said else self._last_words()
                finish(SandboxError(f"the sandbox process exited unexpectedly (status {self.proc.poll() if self.proc else None}){said}"))
                return
            stream.feed(chunk, nonce)
            if all(s.found for s in streams.values()):
                finish(False)
            elif stream.dropped > _MAX_DISCARD and not self._runaway:
                self._runaway = True
                self.kill_children()  # a runaway writer: stop it now rather than at the deadline

        def on_status() -> None:
            if self._read_statuses():
                for fd, stream in streams.items():  # what the dead shell wrote is already in the pipes
                    while not stream.found and (chunk := read_some(fd)):
                        stream.feed(chunk, nonce)
                    stream.flush()
                finish(True)

        if all(s.found for s in streams.values()):
            return False
        for fd in streams:
            loop.add_reader(fd, on_out, fd)
        loop.add_reader(self._status_fd, on_status)
        try:
            async with asyncio.timeout(timeout_s):
                if data:
                    await self._write(data)
                on_status()
                return await asyncio.shield(waiter)
        except TimeoutError:
            return None
        finally:
            for fd in [*streams, self._status_fd]:
                loop.remove_reader(fd)

    def _read_statuses(self) -> bool:
        """Take the exit statuses the keeper reported; True when a shell ended."""
        got = False
        while (chunk := read_some(self._status_fd)):
            self._status_buf += chunk
        while b"\n" in self._status_buf:
            line, self._status_buf = self._status_buf.split(b"\n", 1)
            self._statuses.append(int(line) if line.strip().isdigit() else -1)
            del self._statuses[:-8]
            self._shell_alive, got = False, True
        return got

    async def _await_status(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while not self._read_statuses():
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise SandboxError(f"the sandbox shell did not end when killed{self._last_words()}")
            await asyncio.sleep(0.001)

    async def _write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, set_done, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
            except BrokenPipeError as exc:
                raise SandboxError(f"the sandbox shell closed its input (the sandbox died){self._last_words(wait_s=2.0)}") from exc

    # ------------------------------------------------------------------ processes

    def shell_pid(self) -> int | None:
        """Host pid of the current session bash (the keeper's child), or None."""
        return self._shell_of(self._tree())

    def kill_children(self) -> None:
        """SIGKILL every process of the tree except the shell and its ancestors.

        Repeated until none is left, because a fork bomb keeps forking between two passes.
        """
        for _ in range(50):
            if not self._kill_pass(keep_shell=True):
                return
            time.sleep(0.002)

    def kill_all_but_keeper(self) -> None:
        """SIGKILL every process of the sandbox but the keeper and the launcher, whatever its name.

        The keeper starts no shell until the host asks, so repeated passes end with none left.
        """
        for _ in range(200):
            if not self._kill_pass(keep_shell=False):
                return
            time.sleep(0.002)
        raise SandboxError("processes of the sandbox kept appearing after 200 kill passes")

    def _kill_pass(self, keep_shell: bool) -> int:
        tree = self._tree()
        parents = {p: pp for p, pp, _ in tree}
        keep = {self.pid}
        for start in ((self._shell_of(tree), self.loop_pid) if keep_shell else (self.loop_pid,)):
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
        return next((pid for pid, ppid, _ in tree if ppid == self.loop_pid), None)

    def kill_shell(self) -> None:
        """SIGKILL the bash session itself (the keeper reports it; the next command gets a new one)."""
        pid = self.shell_pid()
        if pid is not None:
            kill_all([pid])

    async def stop(self) -> None:
        """Kill the whole tree and reap the launched process (idempotent)."""
        proc = self.proc
        if proc is None:
            self._close_fds()
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
        self._close_fds()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def _close_fds(self) -> None:
        for fd in (self._status_fd, self._go_fd):
            if fd >= 0:
                try:
                    asyncio.get_running_loop().remove_reader(fd)
                except RuntimeError:
                    pass
                os.close(fd)
        self._status_fd = self._go_fd = -1
