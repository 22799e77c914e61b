"""The ``local`` backend: a bash session in a temporary directory, with NO isolation.

For debugging only: commands run as you, see your files and your network. Timeouts and the
output cap still apply; memory, pid and workspace limits do not. It warns loudly on start.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import warnings

from toolgym.envs.shell.sandbox import CommandResult, SandboxLimits, _q
from toolgym.envs.shell.session import BashSession, loop_script
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
        token = secrets.token_hex(16)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.workspace, "LANG": "C.UTF-8", "TERM": "dumb"}
        self.session = BashSession(["/bin/sh", "-c", loop_script(token)], token, f"cd {_q(self.workspace)}; umask 022", env=env, cwd=self.workspace)
        try:
            await self.session.start()
        except BaseException:
            await self._close()
            raise

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        return await self._session().execute(f"eval {_q(command)} </dev/null", timeout_s, cap=self.limits.output_bytes)

    async def _close(self) -> None:
        if self.session is not None:
            await self.session.stop()
        if self.workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)
