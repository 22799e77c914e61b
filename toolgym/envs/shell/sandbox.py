"""The sandbox interface: one persistent shell plus a private workspace, behind a few primitives.

A backend (``bwrap``, ``docker``, ``local``) implements five coroutines: ``_start``, ``_run``
(one command in the persistent bash session), ``_export_tar`` / ``_import_tar`` (the workspace as
a tar archive) and ``_close``. The base class builds everything else on them: confined file tools,
snapshots, a canonical digest and a structured diff. It also routes every call onto the sandbox
runtime's event loop (``toolgym.envs.shell.runtime``), so a sandbox can be used from any thread,
from sync code (``sandbox.sync.run(...)``) or from any event loop.

>>> sb = make_sandbox("bwrap")                        # doctest: +SKIP
>>> sb.sync.start(); sb.sync.run("cd sub 2>/dev/null || mkdir sub && cd sub; pwd").stdout  # doctest: +SKIP
'/workspace/sub\\n'
"""

from __future__ import annotations

import abc
import importlib
import io
import posixpath
import shutil
import tarfile
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.shell.workspace import WorkspaceDiff, WorkspaceSnapshot, diff_manifests, manifest_digest, tar_manifest
from toolgym.errors import ConfigError, EnvError, did_you_mean

WORKSPACE = "/workspace"
"""Where the workspace lives inside every sandbox (the shell starts there)."""


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox. Every field has a safe default for tool-use RL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """Wall-clock limit of one command; past it the command's processes are killed."""
    output_bytes: int = Field(default=16_384, ge=256, le=16 * 2**20)
    """Bytes kept of stdout and of stderr per command; the rest is cut with a marker."""
    memory_mb: int = Field(default=512, ge=16, le=65_536)
    """Memory of everything in the sandbox, workspace tmpfs included."""
    pids: int = Field(default=128, ge=8, le=32_768)
    """Processes and threads alive at once in the sandbox."""
    cpu_quota: float = Field(default=1.0, gt=0, le=64)
    """CPU cores' worth of time the sandbox may use (cgroup CFS quota)."""
    workspace_mb: int = Field(default=64, ge=1, le=65_536)
    """Size of the workspace (and of /tmp) in MiB."""


class CommandResult(BaseModel):
    """What one command produced. ``exit_code`` is None when the command did not finish."""

    model_config = ConfigDict(extra="forbid")

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    """Part of stdout or stderr was cut (see ``output_bytes``)."""
    duration_s: float = 0.0
    note: str = ""
    """What the sandbox did besides running the command (processes killed, shell restarted)."""


class SandboxError(EnvError):
    """The sandbox itself failed (could not start, died, broke its protocol): infrastructure."""


class SandboxUnavailable(SandboxError, ConfigError):
    """A backend cannot run on this machine (missing program, daemon or image); says how to fix it."""


class PathOutsideWorkspace(ValueError):
    """A file tool was given a path that leaves the workspace (a model mistake, shown to the model)."""


class Sandbox(abc.ABC):
    """One sandbox: a persistent bash session whose working directory starts at ``/workspace``.

    Public methods are coroutines that may be awaited from any event loop; ``sandbox.sync``
    offers the same methods for blocking code. ``close`` is idempotent and leaves nothing
    behind (no process, mount, cgroup, container or temporary directory).
    """

    backend: ClassVar[str] = ""
    """Name of the backend in ``BACKENDS``."""
    workspace: str = WORKSPACE
    """Absolute path of the workspace as the shell sees it (the ``local`` backend uses a temp dir)."""

    def __init__(self, limits: SandboxLimits | None = None):
        self.limits = limits or SandboxLimits()
        self.started = False
        self.closed = False

    # ------------------------------------------------------------------ backend primitives

    @abc.abstractmethod
    async def _start(self) -> None:
        """Start the sandbox and its bash session in ``/workspace`` (runs on the runtime loop)."""

    @abc.abstractmethod
    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        """Run ``command`` in the persistent session: cwd, variables and jobs persist."""

    @abc.abstractmethod
    async def _export_tar(self) -> bytes:
        """The workspace as an uncompressed tar archive (paths relative to the workspace)."""

    @abc.abstractmethod
    async def _import_tar(self, data: bytes) -> None:
        """Replace the workspace's contents by those of the tar archive ``data``."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Stop everything and remove every resource; safe to call twice."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        """False once the sandbox has died on its own (e.g. its keeper was OOM-killed). Backends refine it."""
        return self.started and not self.closed

    async def start(self) -> Sandbox:
        """Start the sandbox (no-op when already started). Returns the sandbox."""
        if self.closed:
            raise SandboxError(f"{self!r} is closed; make a new sandbox")
        if not self.started:
            await _on_runtime(self._start())
            self.started = True
        return self

    async def close(self) -> None:
        """Stop the sandbox and free all its resources (idempotent)."""
        if not self.closed:
            self.closed = True
            await _on_runtime(self._close())

    async def run(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run one bash command in the session. Limits come from ``self.limits``.

        Raises:
            TypeError / ValueError: ``command`` is not a non-empty string (shown to the model by ShellEnv).
            SandboxError: the sandbox failed (infrastructure).
        """
        if not isinstance(command, str):
            raise TypeError(f"command must be a string, got {type(command).__name__}")
        if not command.strip():
            raise ValueError("command is empty; give a bash command such as 'ls -la'")
        if "\x00" in command:
            raise ValueError("command contains a NUL byte, which bash cannot run")
        try:
            command.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"command is not valid text (unpaired surrogate at {exc.start}); send UTF-8 text") from None
        timeout = self.limits.command_timeout_s if timeout_s is None else min(float(timeout_s), 3600.0)
        return await self._call(self._run, command, timeout)

    async def run_isolated(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run a harness command (a task's check) outside the model's session.

        It runs in a fresh shell with a clean environment that no process of the model can
        reach; on bwrap, in a second sandbox holding a copy of the workspace (so the command
        cannot change this one). Output is capped like ``run``'s.
        """
        if not isinstance(command, str) or not command.strip():
            raise ValueError("command must be a non-empty bash command")
        timeout = self.limits.command_timeout_s if timeout_s is None else min(float(timeout_s), 3600.0)
        return await self._call(self._run_isolated, command, timeout)

    async def _run_isolated(self, command: str, timeout_s: float) -> CommandResult:
        """Backends override this; the default (``local``, which isolates nothing) uses a fresh shell."""
        await self._reset_session()
        return await self._run(command, timeout_s)

    async def reset_session(self) -> None:
        """A fresh shell for a new episode: every process of the last one killed, cwd and
        variables reset, every writable place but the workspace wiped (files there are kept)."""
        await self._call(self._reset_session)

    async def _reset_session(self) -> None:
        """Backends with a restartable shell override this; the default only returns to the workspace."""
        await self._run(f"cd {_q(self.workspace)}", 10.0)

    async def reset_to(self, data: bytes) -> None:
        """``reset_session()`` then ``import_tar(data)``: a new episode's sandbox in one call
        (a backend may do both in fewer steps; docker does them in one exec)."""
        await self._call(self._reset_to, data)

    async def _reset_to(self, data: bytes) -> None:
        await self._reset_session()
        await self._import_tar(data)

    async def export_tar(self) -> bytes:
        """The workspace as a tar archive."""
        return await self._call(self._export_tar)

    async def import_tar(self, data: bytes) -> None:
        """Replace the workspace's contents by those of a tar archive."""
        await self._call(self._import_tar, data)

    # ------------------------------------------------------------------ file tools

    def resolve(self, path: str) -> str:
        """``path`` (relative to the workspace, or absolute under it) as an absolute path.

        Raises:
            PathOutsideWorkspace: the path leaves the workspace (``..``, another absolute path).
        """
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise PathOutsideWorkspace(f"path must be a non-empty string, got {path!r}")
        ws = self.workspace
        full = posixpath.normpath(posixpath.join(ws, path))
        if full != ws and not full.startswith(ws + "/"):
            raise PathOutsideWorkspace(f"path {path!r} is outside the workspace {ws}; use a path such as 'src/main.py'")
        return full

    async def read_file(self, path: str, max_bytes: int | None = None) -> str:
        """Text of a workspace file (UTF-8, undecodable bytes replaced), at most ``max_bytes``.

        Symlinks are followed only while they stay inside the workspace.

        Raises:
            PathOutsideWorkspace: the path, or a symlink on it, leaves the workspace.
            FileNotFoundError / IsADirectoryError: as the names say (messages for the model).
        """
        await self._ensure_started()  # the workspace path is known once started (local)
        full = self.resolve(path)
        cap = min(max_bytes or self.limits.output_bytes, self.limits.output_bytes)
        body = f'[ -e "$p" ] || {{ echo tg:missing >&2; exit 4; }}; [ -d "$p" ] && {{ echo tg:isdir >&2; exit 5; }}; head -c {int(cap)} -- "$p"'
        return (await self._file_op(full, body, path)).stdout

    async def read_files(self, paths: list[str], max_bytes: int | None = None) -> dict[str, str | Exception]:
        """``read_file`` of each path: its text, or the exception ``read_file`` raises for it
        (``OSError``, ``PathOutsideWorkspace``, ``ValueError``). ``SandboxError`` (the sandbox
        itself failed) raises. A backend may read them all at once (docker: one exec)."""
        out: dict[str, str | Exception] = {}
        for path in paths:
            try:
                out[path] = await self.read_file(path, max_bytes)
            except SandboxError:
                raise
            except (OSError, PathOutsideWorkspace, ValueError) as exc:
                out[path] = exc
        return out

    async def write_file(self, path: str, content: str) -> int:
        """Create or overwrite a workspace file (parents created). Returns the bytes written."""
        if not isinstance(content, str):
            raise TypeError(f"content must be a string, got {type(content).__name__}")
        await self._ensure_started()
        full = self.resolve(path)
        data = content.encode("utf-8", "surrogateescape")
        body = (
            '[ -d "$p" ] && { echo tg:isdir >&2; exit 5; }; d=$(dirname -- "$p"); mkdir -p -- "$d" || exit 6; '
            f'printf %s {_q(_b64(data))} | base64 -d > "$p"'
        )
        await self._file_op(full, body, path)
        return len(data)

    async def list_dir(self, path: str = ".") -> list[str]:
        """Names in a workspace directory, sorted; directories end with ``/``."""
        await self._ensure_started()
        full = self.resolve(path)
        body = (
            '[ -e "$p" ] || { echo tg:missing >&2; exit 4; }; [ -d "$p" ] || { echo tg:notdir >&2; exit 7; }; cd -- "$p" && '
            'for f in * .[!.]* ..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; '
            'if [ -d "$f" ]; then printf "%s/\\n" "$f"; else printf "%s\\n" "$f"; fi; done | LC_ALL=C sort'
        )
        out = await self._file_op(full, body, path)
        return [line for line in out.stdout.split("\n") if line]

    async def _file_op(self, full: str, body: str, path: str) -> CommandResult:
        # A subshell, so that `exit` cannot end the session; realpath -m resolves symlinks on
        # the way, so a link that points outside the workspace is refused before any access.
        ws = _q(self.workspace)
        command = (
            f'( p=$(realpath -m -- {_q(full)}) || exit 2; case "$p" in {ws}|{ws}/*) ;; '
            f'*) echo tg:outside >&2; exit 3;; esac; {body} )'
        )
        result = await self._call(self._run, command, max(self.limits.command_timeout_s, 10.0))
        if result.exit_code == 0:
            return result
        reason = result.stderr.strip() or result.note or f"exit code {result.exit_code}"
        errors: dict[str, Callable[[str], Exception]] = {
            "outside": lambda m: PathOutsideWorkspace(f"{path!r} leads outside the workspace through a symlink"),
            "missing": lambda m: FileNotFoundError(f"no such file or directory: {path!r}"),
            "isdir": lambda m: IsADirectoryError(f"{path!r} is a directory; use list_dir"),
            "notdir": lambda m: NotADirectoryError(f"{path!r} is not a directory"),
        }
        for key, make in errors.items():
            if reason.startswith(f"tg:{key}"):
                raise make(reason)
        raise OSError(f"{path!r}: {reason[:300]}")

    # ------------------------------------------------------------------ snapshots and digests

    async def snapshot(self) -> WorkspaceSnapshot:
        """The workspace's files, to ``restore`` here or in a sibling sandbox."""
        data = await self.export_tar()
        return WorkspaceSnapshot(tar=data, manifest=tar_manifest(data))

    async def restore(self, snap: WorkspaceSnapshot) -> None:
        """Put the workspace back to ``snap`` (the shell session, cwd and variables stay)."""
        await self.import_tar(snap.tar)

    async def manifest(self) -> dict[str, dict[str, Any]]:
        """Path -> {type, mode, sha256 or target} for every entry of the workspace."""
        return tar_manifest(await self.export_tar())

    async def workspace_digest(self) -> str:
        """Canonical digest of the workspace: same files, modes and contents -> same digest."""
        return manifest_digest(await self.manifest())

    async def diff(self, against: WorkspaceSnapshot | dict[str, dict[str, Any]]) -> WorkspaceDiff:
        """Added, removed and changed files since ``against`` (a snapshot or a manifest)."""
        before = against.manifest if isinstance(against, WorkspaceSnapshot) else against
        return diff_manifests(before, await self.manifest())

    # ------------------------------------------------------------------ plumbing

    async def _ensure_started(self) -> None:
        if self.closed:
            raise SandboxError(f"{type(self).__name__} is closed; make a new sandbox")
        if not self.started:
            await self.start()

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self.closed:
            raise SandboxError(f"{type(self).__name__} is closed; make a new sandbox")
        if not self.started:
            await self.start()
        return await _on_runtime(fn(*args))

    @property
    def sync(self) -> _SyncView:
        """Blocking versions of the public coroutines: ``sandbox.sync.run("ls")``."""
        return _SyncView(self)

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self.started else "new"
        return f"<{type(self).__name__} {state}>"


class _SyncView:
    """``sandbox.sync.<method>(...)`` runs ``sandbox.<method>(...)`` on the runtime and waits."""

    def __init__(self, sandbox: Sandbox):
        self._sandbox = sandbox

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sandbox, name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            from toolgym.envs.shell.runtime import run_sync

            return run_sync(method(*args, **kwargs))

        return blocking


async def _on_runtime(coro: Awaitable[Any]) -> Any:
    from toolgym.envs.shell.runtime import on_runtime

    return await on_runtime(coro)


def _q(text: str) -> str:
    """Single-quote ``text`` for bash."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def tar_of_files(files: dict[str, str | bytes]) -> bytes:
    """A tar archive holding ``files`` (relative path -> content), for ``import_tar``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(posixpath.normpath(path).lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------------- backends

BACKENDS: dict[str, str] = {
    "bwrap": "toolgym.envs.shell.bwrap_backend:BwrapSandbox",
    "docker": "toolgym.envs.shell.docker_backend:DockerSandbox",
    "local": "toolgym.envs.shell.local_backend:LocalSandbox",
}
"""Backend name -> ``module:Class``; modules are imported only when their backend is used."""

BackendName = Literal["bwrap", "docker", "local"]


def backend_class(name: str) -> type[Sandbox]:
    """The ``Sandbox`` subclass for a backend name (imports its module on first use).

    Raises:
        ConfigError: unknown name (with a "did you mean").
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown sandbox backend {name!r}; known: {', '.join(sorted(BACKENDS))}.{did_you_mean(name, BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_sandbox(backend: str = "bwrap", limits: SandboxLimits | dict[str, Any] | None = None, **options: Any) -> Sandbox:
    """A new, not yet started sandbox of ``backend`` (call ``await sb.start()`` or use ``async with``).

    Args:
        backend: "bwrap" (default on Linux), "docker" or "local" (no isolation; debugging only).
        limits: A ``SandboxLimits`` or a dict of its fields.
        **options: Backend-specific options (e.g. ``image=`` for docker).

    Raises:
        ConfigError: unknown backend or bad limits.
        SandboxUnavailable: the backend's program, daemon or image is missing; the message says
            how to install or start it (``make sandbox-deps``).
    """
    if isinstance(limits, dict):
        limits = _limits_from_dict(limits)
    cls = backend_class(backend)
    check = getattr(cls, "check_available", None)
    if check is not None:
        check(**options)
    return cls(limits=limits, **options)


def _limits_from_dict(data: dict[str, Any]) -> SandboxLimits:
    from pydantic import ValidationError

    unknown = [k for k in data if k not in SandboxLimits.model_fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"unknown sandbox limit {key!r}.{did_you_mean(key, SandboxLimits.model_fields)} Known: {', '.join(SandboxLimits.model_fields)}")
    try:
        return SandboxLimits(**data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ConfigError(f"sandbox limit {'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})") from None


def require_program(name: str, how: str) -> str:
    """Path of program ``name``, or ``SandboxUnavailable`` saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise SandboxUnavailable(f"{name!r} is not installed (needed by this sandbox backend). {how}")
    return path
