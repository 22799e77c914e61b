"""How much the writable places of a sandbox (``/workspace``, ``/tmp``, ``/dev/shm``) may hold.

Files in a tmpfs are memory. Keeping all writable places together within half of ``memory_mb``
leaves the processes memory when the model fills them: a full disk is then an error the model
sees, not an OOM kill of the sandbox, and the sandbox is empty again after the next reset.
Where one tmpfs holds all three places (bwrap started by root) ``quota_mb`` is that tmpfs;
where each place is its own mount (docker; bwrap started by an ordinary user) the workspace
gets its size and ``scratch_sizes`` the rest of the budget.
"""

from __future__ import annotations

from toolgym.envs.shell.sandbox import SandboxLimits

SHM_MB = 16
"""Largest ``/dev/shm``: programs need a little; more is only a second, unaccounted workspace."""


def quota_mb(limits: SandboxLimits) -> int:
    """Size in MiB of a sandbox's one tmpfs: ``workspace_mb``, at most half the memory limit."""
    return max(1, min(limits.workspace_mb, limits.memory_mb // 2))


def scratch_sizes(limits: SandboxLimits, workspace_mb: int | None = None) -> tuple[int, int]:
    """Sizes in MiB of ``/tmp`` and ``/dev/shm`` next to a workspace of ``workspace_mb``
    (default ``limits.workspace_mb``): what is left of half of ``memory_mb`` (at least 1 MiB
    each), and never more than the workspace itself.

    >>> scratch_sizes(SandboxLimits(memory_mb=512, workspace_mb=64))
    (64, 16)
    >>> scratch_sizes(SandboxLimits(memory_mb=32, workspace_mb=64), workspace_mb=16)
    (1, 1)
    """
    workspace = limits.workspace_mb if workspace_mb is None else workspace_mb
    room = max(1, limits.memory_mb // 2 - workspace)
    tmp = max(1, min(workspace, room))
    return tmp, max(1, min(SHM_MB, tmp))
