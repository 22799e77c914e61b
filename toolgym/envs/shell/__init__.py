"""Real shells in sandboxes: the ``Sandbox`` interface, its backends and ``ShellEnv``.

Nothing heavy is imported here; backends load on first use (``make_sandbox("bwrap")``).
"""

from toolgym.envs.shell.sandbox import (
    BACKENDS,
    CommandResult,
    PathOutsideWorkspace,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    make_sandbox,
)
from toolgym.envs.shell.workspace import WorkspaceDiff, WorkspaceSnapshot

__all__ = [
    "BACKENDS",
    "CommandResult",
    "PathOutsideWorkspace",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxUnavailable",
    "WorkspaceDiff",
    "WorkspaceSnapshot",
    "make_sandbox",
]
