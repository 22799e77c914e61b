"""What the bwrap launcher does before it execs ``bwrap``: privileges, storage, keeper binary.

Started by root (as on CI), the launcher child of each sandbox:

1. enters the sandbox's cgroups (while it still may);
2. unshares a private mount namespace and mounts ONE size-limited tmpfs there (the single
   quota of the sandbox), with ``ws``, ``tmp`` and ``shm`` directories that bwrap binds on
   ``/workspace``, ``/tmp`` and ``/dev/shm``; the host's mount table never sees it;
3. joins a fresh anonymous session keyring (none of root's keys stay reachable);
4. drops to the sandbox's own unprivileged host uid (``SANDBOX_UIDS``, one per sandbox, so
   ``RLIMIT_NPROC`` counts one sandbox) with no supplementary groups, then execs bwrap, whose
   user namespace therefore maps to that uid: nothing in the sandbox is host root, and
   host-global kernel settings (``/proc/sys``) and root-only files stay closed.

Started by an ordinary user, bwrap already runs as that (non-zero) uid; the places get one
size-limited tmpfs each (the quota then holds per place, not for all together).
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable

from toolgym.envs.shell.quota import quota_mb, scratch_sizes
from toolgym.envs.shell.sandbox import SandboxLimits

SANDBOX_UIDS = range(2_100_000_000, 2_100_000_000 + 2**24)
"""Host uids (and gids) sandboxes run as when toolgym is root: far above any real account."""
STORE = "/run/toolgym-sandbox"
"""Where the launcher mounts a sandbox's tmpfs, inside its private mount namespace only."""
PLACES = {"ws": 0o755, "tmp": 0o1777, "shm": 0o1777}
"""Directories of the tmpfs and their modes: the workspace, /tmp and /dev/shm."""
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
_SYS_KEYCTL = 250  # x86_64; other architectures skip the keyring step (see _keyctl)
_KEYCTL_JOIN_SESSION_KEYRING = 1

_libc = ctypes.CDLL(None, use_errno=True)
_keeper_path: str | None = None
_live_uids: set[int] = set()


def running_as_root() -> bool:
    """True when toolgym itself runs as uid 0 (sandboxes then drop to ``SANDBOX_UIDS``)."""
    return os.geteuid() == 0


def new_sandbox_uid() -> int:
    """A random uid of ``SANDBOX_UIDS`` that no live sandbox of this process holds.

    Random rather than counted, so that other toolgym processes on the host rarely pick the
    same (2^24 uids); sharing one only merges ``RLIMIT_NPROC`` accounting, as two sandboxes
    never see each other's processes. Give it back with ``release_sandbox_uid``.
    """
    while True:
        uid = SANDBOX_UIDS.start + secrets.randbelow(len(SANDBOX_UIDS))
        if uid not in _live_uids:
            _live_uids.add(uid)
            return uid


def release_sandbox_uid(uid: int) -> None:
    """Mark ``uid`` free again (its sandbox is closed)."""
    _live_uids.discard(uid)


def launcher_fn(limits: SandboxLimits, uid: int, enter: Callable[[], None] | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a root launcher: steps 1-4 of the module docstring.

    Everything it needs is computed here, so the child only makes system calls.
    """
    size = quota_mb(limits) * 2**20
    options = f"size={size},nr_inodes={quota_mb(limits) * 2048},mode=0755".encode()
    rlimits = _rlimits(limits) if enter is None else [(resource.RLIMIT_CORE, 0)]
    places = [(f"{STORE}/{name}", mode) for name, mode in PLACES.items()]

    def launch() -> None:
        if enter is not None:
            enter()
        _check(_libc.unshare(_CLONE_NEWNS), "unshare a mount namespace")
        _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make the mounts private")
        _check(_libc.mount(b"tmpfs", STORE.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "mount the sandbox tmpfs")
        for path, mode in places:
            os.mkdir(path)
            os.chown(path, uid, uid)
            os.chmod(path, mode)
        _keyctl()
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    return launch


def user_fn(limits: SandboxLimits, cgroup_enter: Callable[[], None] | None) -> Callable[[], None]:
    """The ``preexec_fn`` of an ordinary user's launcher: cgroups if writable, else rlimits."""
    rlimits = _rlimits(limits) if cgroup_enter is None else [(resource.RLIMIT_CORE, 0)]

    def launch() -> None:
        if cgroup_enter is not None:
            cgroup_enter()
        _keyctl()
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))

    return launch


def _rlimits(limits: SandboxLimits) -> list[tuple[int, int]]:
    mem = limits.memory_mb * 2**20
    return [(resource.RLIMIT_AS, mem), (resource.RLIMIT_NPROC, limits.pids), (resource.RLIMIT_CORE, 0)]


def rlimit_guarantee(limits: SandboxLimits, per_sandbox_uid: bool) -> str:
    """What the rlimit fallback enforces, in words (reported when cgroups are not writable)."""
    quota = quota_mb(limits)
    files = f"files limited to one {quota} MiB tmpfs" if per_sandbox_uid else \
        "files limited to {} + {} + {} MiB (/workspace, /tmp, /dev/shm)".format(quota, *scratch_sizes(limits, quota))
    procs = f"at most {limits.pids} processes" + (" (per sandbox uid)" if per_sandbox_uid else " for all sandboxes of this user together")
    return (
        f"rlimits only (no writable cgroup): {limits.memory_mb} MiB of address space PER PROCESS (not per sandbox), "
        f"{procs}, no CPU quota; {files}"
    )


def keeper_binary() -> str:
    """Host path of an execute-only copy of ``sh``, the sandbox's keeper.

    A process that execs a file it may not read is not dumpable, so no other process of the
    sandbox (same uid) can open the keeper's ``/proc/1/fd`` pipes or ptrace it. One copy per
    host user, at a fixed place (``/run/toolgym-keeper`` for root), rewritten atomically by each
    process, so a killed process leaves nothing new behind.
    """
    global _keeper_path
    if _keeper_path is None or not os.path.exists(_keeper_path):
        folder = _keeper_folder()
        fd, tmp = tempfile.mkstemp(dir=folder)
        with open(os.path.realpath("/bin/sh"), "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(tmp, 0o111)
        os.replace(tmp, os.path.join(folder, "sh"))
        _keeper_path = os.path.join(folder, "sh")
    return _keeper_path


def _keeper_folder() -> str:
    """A directory only this user can write, that the sandbox's uid can traverse (mode 0711)."""
    uid = os.geteuid()
    folder = "/run/toolgym-keeper" if uid == 0 else os.path.join(tempfile.gettempdir(), f"toolgym-keeper-{uid}")
    try:
        os.mkdir(folder, 0o711)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        folder = tempfile.mkdtemp(prefix="toolgym-keeper-")  # someone else's (or a link): never trust it
    os.chmod(folder, 0o711)
    return folder


def _keyctl() -> None:
    """Join a new anonymous session keyring (x86_64 syscall number; elsewhere a no-op)."""
    if os.uname().machine == "x86_64":
        _check(_libc.syscall(_SYS_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, None), "join a new session keyring")


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox launcher could not {what}: {os.strerror(err)}")
