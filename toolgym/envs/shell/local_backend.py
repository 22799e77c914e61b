"""The ``local`` backend: a bash session in a temporary directory, with NO isolation.

For debugging only: commands run as you, see your files and your network. Timeouts and the
output cap still apply; memory, pid and workspace limits do not. It warns loudly on start.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings

from toolgym.envs.shell.hostfs import HostTree
from toolgym.envs.shell.protocol import DETERMINISM, command_line, keeper_script
from toolgym.envs.shell.sandbox import CommandResult, SandboxError, SandboxLimits, _q
from toolgym.envs.shell.session import BashSession
from toolgym.envs.shell.session_sandbox import SessionSandbox

log = logging.getLogger(__name__)
WARNING = "the 'local' sandbox backend has NO isolation: commands run as this user on this machine; use it for debugging only (use backend='bwrap')"
TEMP_PREFIX = "toolgym-local-"


class LocalSandbox(SessionSandbox):
    """An unisolated bash session whose workspace is a fresh temporary directory."""

    backend = "local"

    def __init__(self, limits: SandboxLimits | None = None):
        super().__init__(limits)
        self.workspace = ""

    async def _start(self) -> None:
        warnings.warn(WARNING, RuntimeWarning, stacklevel=3)
        log.warning(WARNING)
        self.workspace = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workspace, "LANG": "C.UTF-8", "TERM": "dumb", **DETERMINISM}
        self.session = BashSession(["/bin/sh", "-c", keeper_script()], f"cd {_q(self.workspace)}; umask 022", env=env, cwd=self.workspace, keeper="")
        try:
            await self.session.start()
        except BaseException:
            await self._close()
            raise

    def _host(self) -> HostTree:
        if not self.workspace:
            raise SandboxError("the local sandbox is not started")
        return HostTree(self.workspace, self.workspace)

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        return await self._session().execute(command_line(command), timeout_s, cap=self.limits.output_bytes)

    async def _close(self) -> None:
        if self.session is not None:
            await self.session.stop()
        if self.workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)
