"""The ``bwrap`` backend: a bubblewrap sandbox per shell (the default on Linux).

What one sandbox is:

* an unprivileged host uid (``bwrap_setup``: toolgym started as root drops each sandbox to its
  own uid of ``SANDBOX_UIDS`` before exec'ing bwrap), so no sandbox process is host root,
  ``/proc/sys`` and root-only kernel files stay closed, and root's keyrings are out of reach;
* a read-only system (``/usr`` and the few ``/etc`` files programs need, nothing of the host's
  users, keys or home), a read-only root, and ONE size-limited tmpfs holding ``/workspace``,
  ``/tmp`` and ``/dev/shm`` (one quota over every writable place; per place when not root);
* fresh user, pid, ipc, uts, net and cgroup namespaces (no network at all), nested user
  namespaces disabled, all capabilities dropped, uid 1000, an empty environment with PATH and
  HOME set, ``--new-session`` (no TIOCSTI into a terminal) and ``--die-with-parent``;
* ``--as-pid-1``: the keeper (``session.keeper_script``, an execute-only ``sh``) is the
  namespace's init, shielded from signals sent inside the namespace and not dumpable;
* memory, pids and CPU limits from a per-sandbox cgroup (``toolgym.envs.shell.cgroups``),
  or rlimits where cgroups are not writable (``enforcement`` says which, in words).

The harness never runs anything in the model's shell: the file tools, digests, snapshots and
restores read and write the workspace from the host (``hostfs.HostTree`` through the keeper's
``/proc/<pid>/root``), resets kill every process and wipe ``/tmp`` and ``/dev/shm`` from the
host, and ``run_isolated`` (the catalog's checks) runs in a second, fresh sandbox that holds a
host-made copy of the workspace.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from toolgym.envs.shell import bwrap_setup
from toolgym.envs.shell.cgroups import FIX, CgroupLayout, LimitsNotEnforced, SandboxCgroup, host_layout, sweep_stale
from toolgym.envs.shell.hostfs import HostTree
from toolgym.envs.shell.protocol import command_line, high_fd, keeper_script, shell_environment
from toolgym.envs.shell.quota import quota_mb, scratch_sizes
from toolgym.envs.shell.sandbox import WORKSPACE, CommandResult, SandboxError, SandboxLimits, require_program
from toolgym.envs.shell.session import BashSession
from toolgym.envs.shell.session_sandbox import SessionSandbox

log = logging.getLogger(__name__)
INSTALL = "Install it with `apt-get install -y bubblewrap` (or `make sandbox-deps`)."
ETC_FILES = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types")
"""Host /etc entries the sandbox sees (read-only): dynamic linking, Debian alternatives, time zone."""
UID = 1000
PASSWD = f"root:x:0:0:root:/root:/bin/bash\nsandbox:x:{UID}:{UID}:sandbox:{WORKSPACE}:/bin/bash\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n"
GROUP = f"root:x:0:\nsandbox:x:{UID}:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1 localhost sandbox\n::1 localhost\n"
KEEPER = "/.keeper"
"""Where the keeper binary sits inside the sandbox (its argv[0])."""
INIT = f"cd {WORKSPACE}; umask 022; set +m"
"""Run by every new shell before the model's first command."""
IPC_WIPE = "/usr/bin/ipcrm -a 2>/dev/null"
"""Run by the first shell after a reset, before anything of the model's exists: System V IPC
objects are the one kind of state outside the file system (a new sandbox has none)."""
WIPED = ("tmp", "dev/shm")
"""Writable places besides the workspace (HOME is the workspace), emptied at every reset."""

_swept = False
_warned_rlimits = False


class BwrapSandbox(SessionSandbox):
    """A bubblewrap sandbox (see the module docstring for what it enforces).

    Args:
        limits: Resource limits.
        use_cgroups: None: a cgroup (v1 or v2) when one is writable, else rlimits, with the
            weaker guarantee stated in ``enforcement`` and logged; True: a cgroup or
            ``LimitsNotEnforced`` (for callers that must not run with weaker limits);
            False: rlimits only.

    Raises:
        LimitsNotEnforced: ``use_cgroups=True`` and no cgroup hierarchy is writable here.
    """

    backend = "bwrap"

    def __init__(self, limits: SandboxLimits | None = None, *, use_cgroups: bool | None = None):
        super().__init__(limits)
        layout = host_layout()
        if use_cgroups and isinstance(layout, str):
            raise LimitsNotEnforced(f"use_cgroups=True, but no cgroup can enforce the sandbox limits here: {layout}; {FIX}")
        self.use_cgroups = isinstance(layout, CgroupLayout) if use_cgroups is None else use_cgroups
        self.cgroup: SandboxCgroup | None = None
        self.as_root = bwrap_setup.running_as_root()
        self.host_uid = bwrap_setup.new_sandbox_uid() if self.as_root else os.geteuid()
        """The host uid every process of this sandbox runs as (never 0)."""
        self.enforcement = layout.describe() if self.use_cgroups and isinstance(layout, CgroupLayout) else \
            bwrap_setup.rlimit_guarantee(self.limits, self.as_root)
        """Which mechanism enforces ``limits`` here, in words (weaker guarantees spelled out)."""
        self.tree: HostTree | None = None

    @staticmethod
    def check_available(**_: object) -> None:
        """Raise ``SandboxUnavailable`` (with the fix) when bwrap is not installed."""
        require_program("bwrap", INSTALL)

    def argv(self, data_fds: dict[str, int]) -> list[str]:
        """The full bwrap command line of this sandbox."""
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
        args += ["--ro-bind", bwrap_setup.keeper_binary(), KEEPER, "--proc", "/proc", "--dev", "/dev"]
        if self.as_root:  # the launcher's one tmpfs (bwrap_setup.launcher_fn)
            store = bwrap_setup.STORE
            args += ["--bind", f"{store}/ws", WORKSPACE, "--bind", f"{store}/tmp", "/tmp", "--bind", f"{store}/shm", "/dev/shm"]
        else:
            # One tmpfs per place (no private mount namespace without root): together they stay
            # within the one quota's budget, half of memory_mb (toolgym.envs.shell.quota).
            workspace = quota_mb(self.limits)
            tmp, shm = scratch_sizes(self.limits, workspace)
            for place, mb in ((WORKSPACE, workspace), ("/tmp", tmp), ("/dev/shm", shm)):
                args += ["--size", str(mb * 2**20), "--perms", "1777" if place != WORKSPACE else "0755", "--tmpfs", place]
        args += [
            # bwrap's own /dev tmpfs belongs to the sandbox user: read-only, or it would be a
            # writable place outside the quota (sized at half the host's memory).
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE,
        ]
        for name, value in shell_environment(home=WORKSPACE).items():
            args += ["--setenv", name, value]
        args += [KEEPER, "-c", keeper_script()]
        return args

    async def _start(self) -> None:
        global _swept, _warned_rlimits
        if not _swept:  # cgroups left by a crashed process go before we add ours
            _swept = True
            if self.use_cgroups:
                sweep_stale()
        if not self.use_cgroups and not _warned_rlimits:
            _warned_rlimits = True
            log.warning("bwrap sandboxes: %s", self.enforcement)
        if self.as_root:
            os.makedirs(bwrap_setup.STORE, exist_ok=True)
        fds = _data_fds({"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/hosts": HOSTS, "/etc/hostname": "sandbox\n"})
        try:
            enter = None
            if self.use_cgroups:
                self.cgroup = SandboxCgroup(self.limits)
                self.cgroup.create()
                enter = self.cgroup.enter_fn()
            if self.as_root:
                preexec = bwrap_setup.launcher_fn(self.limits, self.host_uid, enter)
            else:
                preexec = bwrap_setup.user_fn(self.limits, enter)
            members = self.cgroup.members if self.cgroup is not None else None
            self.session = BashSession(self.argv(fds), INIT, preexec=preexec, env={}, pass_fds=tuple(fds.values()), members=members, keeper=KEEPER)
            try:
                await self.session.start()
            except SandboxError as exc:
                raise SandboxError(f"{exc}{_userns_hint(str(exc))}") from exc
            root = f"/proc/{self.session.loop_pid}/root"
            self.tree = HostTree(f"{root}{WORKSPACE}", WORKSPACE, owner=(self.host_uid, self.host_uid) if self.as_root else None)
        except BaseException:
            await self._close()
            raise
        finally:
            for fd in fds.values():
                os.close(fd)

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        return await self._session().execute(command_line(command), timeout_s, cap=self.limits.output_bytes)

    async def _reset_session(self) -> None:
        await self._session().restart_shell(between=self._wipe_places, prelude=IPC_WIPE)

    def _wipe_places(self) -> None:
        """Empty /tmp and /dev/shm from the host (every process of the sandbox is dead by now)."""
        root = f"/proc/{self._session().loop_pid}/root"
        for place in WIPED:
            HostTree(f"{root}/{place}", f"/{place}", owner=self.tree.owner if self.tree else None).wipe(0o1777)

    async def _close(self) -> None:
        if self.session is not None:
            await self.session.stop()
        if self.as_root:
            bwrap_setup.release_sandbox_uid(self.host_uid)
        if self.cgroup is not None and not await self.cgroup.aremove():
            raise SandboxError(f"cgroup {self.cgroup.name} still has processes after close")

    async def _run_isolated(self, command: str, timeout_s: float) -> CommandResult:
        """``command`` in a second, fresh sandbox holding a copy of this workspace.

        Nothing of the model's session, processes, /tmp or IPC exists there, and what the
        command writes (caches, reports) does not reach this workspace.
        """
        data, _ = await asyncio.to_thread(self._host().export_tar)
        check = BwrapSandbox(self.limits, use_cgroups=self.use_cgroups)
        try:
            await check._start()
            check.started = True
            await asyncio.to_thread(check._host().import_tar, data)
            return await check._run(command, timeout_s)
        finally:
            check.closed = True
            await check._close()

    def _host(self) -> HostTree:
        if self.tree is None:
            raise SandboxError("the bwrap sandbox is not started")
        return self.tree


def _userns_hint(message: str) -> str:
    """The fix, when bwrap failed because unprivileged user namespaces are switched off."""
    words = ("uid map", "No permissions to create new namespace", "Operation not permitted", "setting up uid")
    if not any(w in message for w in words):
        return ""
    return (
        " -- sandboxes run bwrap as an unprivileged uid, which needs unprivileged user namespaces: "
        "`sysctl -w user.max_user_namespaces=15000`, on Debian `sysctl -w kernel.unprivileged_userns_clone=1`, "
        "on Ubuntu 24.04+ `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or an AppArmor profile for bwrap)"
    )


def _data_fds(files: dict[str, str]) -> dict[str, int]:
    """A pipe per file, already holding its (small) content, for ``--ro-bind-data``."""
    out: dict[str, int] = {}
    for dest, content in files.items():
        r, w = os.pipe()
        os.write(w, content.encode())
        os.close(w)
        out[dest] = high_fd(r)
        os.close(r)
    return out
