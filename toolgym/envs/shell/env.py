"""``ShellEnv``: a ``ToolEnv`` whose tools run in a real, sandboxed bash session.

A task describes its starting workspace in ``task.initial_state``::

    {"files": {"src/app.py": "print('hi')\\n"}, "setup": ["chmod +x run.sh", "git init -q"]}

``files`` are written first, then each ``setup`` command runs (a failing one is an
infrastructure error naming the task). The resulting workspace is kept per task id, so the next
reset of the same task restores those exact bytes instead of re-running setup: same task, same
digest. One sandbox serves all of an env's episodes; each reset restores the files and starts a
fresh shell.

>>> import toolgym
>>> env = ShellEnv(tasks=[Task(id="t", instruction="list files")])   # doctest: +SKIP
>>> obs, info = env.reset(seed=0)                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from toolgym.envs.env import ToolEnv
from toolgym.envs.shell.runtime import run_sync
from toolgym.envs.shell.sandbox import CommandResult, Sandbox, SandboxError, SandboxLimits, make_sandbox, tar_of_files
from toolgym.envs.shell.workspace import WorkspaceSnapshot
from toolgym.envs.tools import tool
from toolgym.envs.types import StopReason, Task
from toolgym.errors import ConfigError

T = TypeVar("T")

INITIAL_CACHE = 256
"""Initial workspaces kept per env (by task id); older ones are rebuilt from files and setup."""

SYSTEM_PROMPT = (
    "You are a careful assistant with a Linux shell. Your working directory is the workspace; "
    "use the tools (bash, read_file, write_file, list_dir) to do what the user asks, then answer briefly."
)


class ShellEnv(ToolEnv):
    """A shell environment: a persistent bash session in a sandbox, plus file tools.

    Args:
        backend: Sandbox backend: "bwrap" (default), "docker" or "local" (no isolation).
        limits: ``SandboxLimits`` or a dict of its fields.
        sandbox_options: Backend options (e.g. ``{"image": ...}`` for docker).
        pool: A ``SandboxPool`` to take a warm sandbox from (and give it back on close).
        **kwargs: Those of ``ToolEnv`` (``tasks``, ``tool_format``, ``user``...).
    """

    system_prompt = SYSTEM_PROMPT
    atomic_calls = False  # the world is a sandbox: saving it per call would tar the workspace each time

    def __init__(self, *, backend: str = "bwrap", limits: SandboxLimits | dict[str, Any] | None = None,
                 sandbox_options: dict[str, Any] | None = None, pool: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.backend = backend
        self.pool = pool
        self.sandbox_options = dict(sandbox_options or {})
        self.limits = limits
        if pool is None:  # fail at construction, with the fix, rather than at the first reset
            self._fresh_sandbox_check()
        self.sandbox: Sandbox | None = None
        self._initial: dict[str, WorkspaceSnapshot] = {}

    # ------------------------------------------------------------------ ToolEnv hooks

    def setup(self, task: Task) -> None:
        run_sync(self._asetup(task))
        self.world = self

    async def _asetup(self, task: Task) -> None:
        sb = await self._asandbox()
        snap = self._initial.get(task.id)
        if snap is not None:
            await sb.reset_to(snap.tar)
            return
        state = task.initial_state or {}
        files, setup = _initial_spec(task.id, state)
        await sb.reset_to(tar_of_files(files))
        for command in setup:
            result = await sb.run(command, timeout_s=max(60.0, sb.limits.command_timeout_s))
            if result.exit_code != 0:
                raise SandboxError(f"task {task.id!r}: setup command {command!r} failed (exit {result.exit_code}): {(result.stderr or result.note)[:300]}")
        if len(self._initial) >= INITIAL_CACHE:  # generated tasks are unlimited: keep the newest
            self._initial.pop(next(iter(self._initial)))
        self._initial[task.id] = await sb.snapshot()
        await sb.reset_session()

    def world_state(self) -> WorkspaceSnapshot:
        return run_sync(self._require().snapshot())

    def load_world(self, state: WorkspaceSnapshot) -> None:
        run_sync(self._require().restore(state))
        self.world = self

    def state_digest(self) -> str:
        """The canonical digest of the workspace (files, modes, contents, link targets)."""
        return run_sync(self._require().workspace_digest())

    def initial_snapshot(self) -> WorkspaceSnapshot | None:
        """The workspace the current task started from (for ``diff``)."""
        return self._initial.get(self.task.id) if self.task is not None else None

    def workspace_diff(self) -> Any:
        """Added, removed and changed files since the task's initial workspace."""
        snap = self.initial_snapshot()
        if snap is None:
            raise ConfigError("workspace_diff() needs a reset() first")
        return run_sync(self._require().diff(snap))

    def close(self) -> None:
        sb, self.sandbox = self.sandbox, None
        if sb is not None:
            if self.pool is not None:
                run_sync(self.pool.release(sb))
            else:
                run_sync(sb.close())
        super().close()

    # ------------------------------------------------------------------ tools

    @tool
    async def bash(self, command: str) -> dict[str, Any]:
        """Run a bash command in the persistent shell (cwd, variables and background jobs persist).

        Args:
            command: The bash command line, e.g. "ls -la" or "cd src && python3 -m pytest -q".
        """
        sb = self._require()
        timeout = sb.limits.command_timeout_s
        if self.task is not None:  # finish before the tool deadline, so the model sees why
            timeout = min(timeout, max(0.5, self.task.limits.tool_timeout_s * 0.9))
        return _report(await self._guard(sb.run(command, timeout_s=timeout)))

    @tool
    async def read_file(self, path: str) -> str:
        """Read a text file of the workspace.

        Args:
            path: Path relative to the workspace (or absolute under /workspace).
        """
        return await self._guard(self._require().read_file(path))

    @tool
    async def write_file(self, path: str, content: str) -> str:
        """Create or overwrite a file of the workspace (missing directories are created).

        Args:
            path: Path relative to the workspace.
            content: The complete new content of the file.
        """
        n = await self._guard(self._require().write_file(path, content))
        return f"wrote {n} bytes to {path}"

    @tool
    async def list_dir(self, path: str = ".") -> list[str]:
        """List a workspace directory (directories end with '/').

        Args:
            path: Directory relative to the workspace ("." for the workspace itself).
        """
        return await self._guard(self._require().list_dir(path))

    # ------------------------------------------------------------------ sandbox

    async def _guard(self, op: Awaitable[T]) -> T:
        """Await a sandbox operation; a broken sandbox ends the episode as infrastructure (env_error)."""
        try:
            return await op
        except SandboxError:
            self._stop = StopReason.ENV_ERROR  # not the model's fault: the rollout records a Failure
            raise

    def _require(self) -> Sandbox:
        if self.sandbox is None:
            raise SandboxError("the shell env has no sandbox; call reset() first")
        return self.sandbox

    async def _asandbox(self) -> Sandbox:
        if self.sandbox is not None and not self.sandbox.closed and not self.sandbox.alive:
            # It died on its own (keeper OOM-killed, daemon gone): a new episode gets a new one.
            await self.sandbox.close()
            self._initial.clear()
        if self.sandbox is None or self.sandbox.closed:
            if self.pool is not None:
                self.sandbox = await self.pool.acquire()
            else:
                self.sandbox = await make_sandbox(self.backend, self.limits, **self.sandbox_options).start()
        return self.sandbox

    def _fresh_sandbox_check(self) -> None:
        from toolgym.envs.shell.sandbox import _limits_from_dict, backend_class

        cls = backend_class(self.backend)
        check = getattr(cls, "check_available", None)
        if check is not None:
            check(**self.sandbox_options)
        if isinstance(self.limits, dict):
            self.limits = _limits_from_dict(self.limits)


def _initial_spec(task_id: str, state: dict[str, Any]) -> tuple[dict[str, str | bytes], list[str]]:
    unknown = set(state) - {"files", "setup"}
    if unknown:
        raise ConfigError(f"task {task_id!r}: initial_state keys {sorted(unknown)} are unknown; a shell task uses 'files' and 'setup'")
    files = state.get("files") or {}
    setup = state.get("setup") or []
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, (str, bytes)) for k, v in files.items()):
        raise ConfigError(f"task {task_id!r}: initial_state['files'] must map relative paths to text")
    if not isinstance(setup, list) or not all(isinstance(c, str) for c in setup):
        raise ConfigError(f"task {task_id!r}: initial_state['setup'] must be a list of bash commands")
    for path in files:
        if path.startswith("/") or ".." in path.split("/"):
            raise ConfigError(f"task {task_id!r}: file path {path!r} must be relative and stay inside the workspace")
    return files, setup


def _report(result: CommandResult) -> dict[str, Any]:
    """What the model sees of a command: exit code, stdout, stderr and any limit hit."""
    out: dict[str, Any] = {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
    if result.timed_out:
        out["timed_out"] = True
    if result.truncated:
        out["truncated"] = True
    if result.note:
        out["note"] = result.note
    return out


__all__ = ["ShellEnv"]
