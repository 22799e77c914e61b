"""The ``bwrap`` backend: a bubblewrap sandbox per shell (the default on Linux).

What one sandbox is:

* a read-only system (``/usr`` and the few ``/etc`` files programs need, nothing of the host's
  users, keys or home), a read-only root, and private size-limited tmpfs mounts for
  ``/workspace`` and ``/tmp`` (the workspace exists only in the sandbox's memory, so closing
  the sandbox leaves no directory behind);
* fresh user, pid, ipc, uts, net and cgroup namespaces (no network at all), nested user
  namespaces disabled, all capabilities dropped, uid 1000, an empty environment with PATH and
  HOME set, ``--new-session`` (no TIOCSTI into a terminal) and ``--die-with-parent``;
* ``--as-pid-1``: the small ``sh`` loop that keeps the bash session alive is the namespace's
  init, which the kernel shields from signals sent inside the namespace, so ``kill -9 -1``
  ends the model's processes but never the sandbox (the loop also reaps orphans);
* memory, pids and CPU limits from a per-sandbox cgroup (``toolgym.envs.shell.cgroups``),
  or per-process rlimits where cgroups are not writable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from toolgym.envs.shell.cgroups import SandboxCgroup, cgroups_writable, rlimit_fn, sweep_stale
from toolgym.envs.shell.sandbox import WORKSPACE, CommandResult, SandboxError, SandboxLimits, require_program
from toolgym.envs.shell.session import BashSession, loop_script
from toolgym.envs.shell.session_sandbox import SessionSandbox, quote

INSTALL = "Install it with `apt-get install -y bubblewrap` (or `make sandbox-deps`)."
ETC_FILES = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types")
"""Host /etc entries the sandbox sees (read-only): dynamic linking, Debian alternatives, time zone."""
UID = 1000
PASSWD = f"root:x:0:0:root:/root:/bin/bash\nsandbox:x:{UID}:{UID}:sandbox:{WORKSPACE}:/bin/bash\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n"
GROUP = f"root:x:0:\nsandbox:x:{UID}:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1 localhost sandbox\n::1 localhost\n"
INIT = f"cd {WORKSPACE}; umask 022; set +m"

_swept = False


class BwrapSandbox(SessionSandbox):
    """A bubblewrap sandbox (see the module docstring for what it enforces).

    Args:
        limits: Resource limits.
        use_cgroups: None: cgroups when writable, else rlimits; False: rlimits only.
    """

    backend = "bwrap"
    tar_create_flags = "--numeric-owner"

    def __init__(self, limits: SandboxLimits | None = None, *, use_cgroups: bool | None = None):
        super().__init__(limits)
        self.use_cgroups = cgroups_writable() if use_cgroups is None else use_cgroups
        self.cgroup: SandboxCgroup | None = None

    @staticmethod
    def check_available() -> None:
        """Raise ``SandboxUnavailable`` (with the fix) when bwrap is not installed."""
        require_program("bwrap", INSTALL)

    def argv(self, token: str, data_fds: dict[str, int]) -> list[str]:
        """The full bwrap command line of this sandbox."""
        lim = self.limits
        args = [
            require_program("bwrap", INSTALL),
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--as-pid-1", "--clearenv", "--cap-drop", "ALL", "--uid", str(UID), "--gid", str(UID), "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib",
        ]
        if Path("/usr/lib64").exists():
            args += ["--symlink", "usr/lib64", "/lib64"]
        for path in ETC_FILES:
            args += ["--ro-bind-try", path, path]
        for dest, fd in data_fds.items():
            args += ["--ro-bind-data", str(fd), dest]
        size = str(lim.workspace_mb * 2**20)
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", WORKSPACE,
            "--remount-ro", "/", "--chdir", WORKSPACE,
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", WORKSPACE,
            "--setenv", "USER", "sandbox", "--setenv", "LANG", "C.UTF-8", "--setenv", "TERM", "dumb",
            "--setenv", "TMPDIR", "/tmp",
            "/bin/sh", "-c", loop_script(token),
        ]
        return args

    async def _start(self) -> None:
        global _swept
        if not _swept:  # cgroups left by a crashed process go before we add ours
            _swept = True
            if self.use_cgroups:
                sweep_stale()
        token = secrets.token_hex(16)
        fds = _data_fds({"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/hosts": HOSTS, "/etc/hostname": "sandbox\n"})
        try:
            if self.use_cgroups:
                self.cgroup = SandboxCgroup(self.limits)
                self.cgroup.create()
                preexec = self.cgroup.enter_fn()
            else:
                preexec = rlimit_fn(self.limits)
            members = self.cgroup.members if self.cgroup is not None else None
            self.session = BashSession(self.argv(token, fds), token, INIT, preexec=preexec, env={}, pass_fds=tuple(fds.values()), members=members)
            await self.session.start()
        except BaseException:
            await self._close()
            raise
        finally:
            for fd in fds.values():
                os.close(fd)

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        # eval keeps cwd, variables and jobs in the session; </dev/null keeps commands off the
        # session's own stdin (where the next command line will arrive).
        script = f"eval {quote(command)} </dev/null"
        return await self._session().execute(script, timeout_s, cap=self.limits.output_bytes)

    async def _close(self) -> None:
        if self.session is not None:
            await self.session.stop()
        if self.cgroup is not None and not await self.cgroup.aremove():
            raise SandboxError(f"cgroup {self.cgroup.name} still has processes after close")



def _data_fds(files: dict[str, str]) -> dict[str, int]:
    """A pipe per file, already holding its (small) content, for ``--ro-bind-data``."""
    out: dict[str, int] = {}
    for dest, content in files.items():
        r, w = os.pipe()
        os.write(w, content.encode())
        os.close(w)
        out[dest] = r
    return out
