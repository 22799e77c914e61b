"""``SessionSandbox``: what the sandboxes driving one local ``BashSession`` share (bwrap, local).

Both run the model's bash session as a child process and reach the workspace from the host
(``hostfs.HostTree``): the file tools, the digest, snapshots, restores and wipes never run a
command, so nothing the model does in its shell can change what they see or do.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import Callable
from typing import TypeVar

from toolgym.envs.shell.hostfs import HostTree
from toolgym.envs.shell.sandbox import Sandbox, SandboxError, SandboxLimits
from toolgym.envs.shell.session import BashSession
from toolgym.envs.shell.workspace import WorkspaceSnapshot, tar_manifest

T = TypeVar("T")


class SessionSandbox(Sandbox):
    """A sandbox whose shell is a ``BashSession`` child process; subclasses start it and give ``_host``."""

    def __init__(self, limits: SandboxLimits | None = None):
        super().__init__(limits)
        self.session: BashSession | None = None

    @property
    def alive(self) -> bool:
        proc = self.session.proc if self.session is not None else None
        return super().alive and proc is not None and proc.poll() is None

    def _host(self) -> HostTree:
        """The workspace as the host reaches it."""
        raise NotImplementedError

    async def _on_host(self, fn: Callable[[], T]) -> T:
        """Run a blocking ``HostTree`` operation off the runtime loop (other sandboxes go on)."""
        await self._ensure_started()
        return await self._call(asyncio.to_thread, fn)

    async def _reset_session(self) -> None:
        await self._session().restart_shell()

    # ------------------------------------------------------------------ file tools, from the host

    async def read_file(self, path: str, max_bytes: int | None = None) -> str:
        """Text of a workspace file (UTF-8, undecodable bytes replaced), at most ``max_bytes``.

        Symlinks are followed only while they stay inside the workspace.

        Raises:
            PathOutsideWorkspace: the path, or a symlink on it, leaves the workspace.
            FileNotFoundError / IsADirectoryError / OSError: as the names say (messages for the model).
        """
        self.resolve(path)
        cap = min(max_bytes or self.limits.output_bytes, self.limits.output_bytes)
        data = await self._on_host(lambda: self._host().read(path, cap))
        return data.decode("utf-8", "replace")

    async def write_file(self, path: str, content: str) -> int:
        """Create or overwrite a workspace file (parents created). Returns the bytes written.

        Raises:
            OSError: not every byte could be written (the workspace is full); the file is left empty.
        """
        if not isinstance(content, str):
            raise TypeError(f"content must be a string, got {type(content).__name__}")
        self.resolve(path)
        data = content.encode("utf-8", "surrogateescape")
        await self._on_host(lambda: self._host().write(path, data))
        return len(data)

    async def list_dir(self, path: str = ".") -> list[str]:
        """Names in a workspace directory, sorted by their bytes; directories end with ``/``."""
        self.resolve(path)
        return await self._on_host(lambda: self._host().listdir(path))

    # ------------------------------------------------------------------ archives, from the host

    async def _export_tar(self) -> bytes:
        data, _ = await asyncio.to_thread(self._host().export_tar)
        return data

    async def _import_tar(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._host().import_tar, data)
        except (OSError, ValueError, EOFError, tarfile.TarError) as exc:
            raise SandboxError(f"could not import the workspace: {exc}") from exc

    async def snapshot(self) -> WorkspaceSnapshot:
        """The workspace's files, with notes on entries no archive can hold (sockets, devices)."""
        data, notes = await self._on_host(self._host().export_tar)
        return WorkspaceSnapshot(tar=data, manifest=tar_manifest(data), notes=tuple(notes))

    def _session(self) -> BashSession:
        if self.session is None:
            raise SandboxError(f"the {self.backend} sandbox is not started")
        return self.session


def quote(text: str) -> str:
    """``text`` as one single-quoted shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"

