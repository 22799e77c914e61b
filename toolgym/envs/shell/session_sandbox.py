"""``SessionSandbox``: what the sandboxes driving one local ``BashSession`` share (bwrap, local).

Both run a bash session as a child process; they differ in how it is started and isolated,
not in how the workspace moves in and out: as a tar stream through the session itself, so
the archive is written and read with the sandbox's own view of the files.
"""

from __future__ import annotations

import base64

from toolgym.envs.shell.sandbox import Sandbox, SandboxError, SandboxLimits
from toolgym.envs.shell.session import BashSession


class SessionSandbox(Sandbox):
    """A sandbox whose shell is a ``BashSession`` child process; subclasses start it."""

    tar_create_flags = ""
    """Extra flags of ``tar -c`` when exporting (bwrap adds ``--numeric-owner``)."""

    def __init__(self, limits: SandboxLimits | None = None):
        super().__init__(limits)
        self.session: BashSession | None = None

    @property
    def alive(self) -> bool:
        proc = self.session.proc if self.session is not None else None
        return super().alive and proc is not None and proc.poll() is None

    async def _reset_session(self) -> None:
        await self._session().restart_shell()

    async def _export_tar(self) -> bytes:
        flags = f" {self.tar_create_flags}" if self.tar_create_flags else ""
        result = await self._session().execute(f"tar -C {quote(self.workspace)}{flags} -cf - . | base64 -w0", 120.0)
        if result.exit_code != 0:
            raise SandboxError(f"could not export the workspace: {result.stderr.strip()[:300]}")
        return base64.b64decode(result.stdout)

    async def _import_tar(self, data: bytes) -> None:
        result = await self._session().execute(import_script(self.workspace, len(data)), 120.0, stdin_data=data)
        if result.exit_code != 0:
            raise SandboxError(f"could not import the workspace: {result.stderr.strip()[:300]}")

    def _session(self) -> BashSession:
        if self.session is None:
            raise SandboxError(f"the {self.backend} sandbox is not started")
        return self.session


def import_script(workspace: str, size: int) -> str:
    """Bash that empties ``workspace`` and unpacks the next ``size`` bytes of stdin into it.

    ``head -c`` reads exactly ``size`` bytes; the ``read`` loop (a builtin: no process) drains
    whatever tar left unread, so a broken archive can never leave bytes behind to be read as
    the next command.
    """
    ws = quote(workspace)
    return (
        f"find {ws} -mindepth 1 -delete 2>/dev/null || {{ chmod -R u+rwX {ws}; find {ws} -mindepth 1 -delete; }}; "
        f"head -c {int(size)} | {{ tar -C {ws} -xf - --no-same-owner; rc=$?; while IFS= read -r -d '' _; do :; done; exit $rc; }}"
    )


def quote(text: str) -> str:
    """``text`` as one single-quoted shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"
