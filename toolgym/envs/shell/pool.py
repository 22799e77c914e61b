"""``SandboxPool``: a warm pool of started sandboxes, so an episode never waits for a start.

``acquire`` hands out a ready sandbox (starting one only when the pool is empty) and refills the
pool in the background; ``release`` wipes a sandbox (empty workspace, fresh shell) and keeps it
for the next episode, or closes it when the pool is full or closed. All work happens on the
sandbox runtime loop, so the pool can be used from any thread or event loop.

>>> pool = SandboxPool("bwrap", size=8)        # doctest: +SKIP
>>> env = ShellEnv(pool=pool, tasks=[...])     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from typing import Any

from toolgym.envs.shell.runtime import on_runtime
from toolgym.envs.shell.sandbox import Sandbox, SandboxLimits, make_sandbox, tar_of_files


class SandboxPool:
    """Keeps up to ``size`` started sandboxes of one backend and limits ready to hand out.

    Args:
        backend: Sandbox backend name.
        limits: Limits of every sandbox of the pool.
        size: How many ready sandboxes to keep.
        **options: Backend options.
    """

    def __init__(self, backend: str = "bwrap", limits: SandboxLimits | dict[str, Any] | None = None, size: int = 8, **options: Any):
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.backend, self.limits, self.size, self.options = backend, limits, size, options
        make_sandbox(backend, limits, **options)  # fail now, with the fix, if the backend is missing
        self._ready: list[Sandbox] = []
        self._filling: set[asyncio.Task[None]] = set()
        self.closed = False
        self.started = 0
        """Sandboxes this pool has started (a measure of how much warming saved)."""

    @property
    def ready(self) -> int:
        """Sandboxes ready right now."""
        return len(self._ready)

    async def fill(self) -> None:
        """Start sandboxes until ``size`` are ready."""
        await on_runtime(self._fill())

    async def acquire(self) -> Sandbox:
        """A started sandbox with an empty workspace and a fresh shell."""
        return await on_runtime(self._acquire())

    async def release(self, sandbox: Sandbox) -> None:
        """Give a sandbox back: wiped and kept when there is room, else closed."""
        await on_runtime(self._release(sandbox))

    async def close(self) -> None:
        """Close every ready sandbox and stop refilling (idempotent)."""
        await on_runtime(self._close())

    # ------------------------------------------------------------------ on the runtime loop

    async def _new(self) -> Sandbox:
        sb = make_sandbox(self.backend, self.limits, **self.options)
        self.started += 1
        return await sb.start()

    async def _fill(self) -> None:
        missing = self.size - len(self._ready) - len(self._filling)
        if missing > 0:
            await asyncio.gather(*(self._add() for _ in range(missing)))

    async def _add(self) -> None:
        sb = await self._new()
        if self.closed or len(self._ready) >= self.size:
            await sb.close()
        else:
            self._ready.append(sb)

    def _refill_soon(self) -> None:
        if not self.closed and len(self._ready) + len(self._filling) < self.size:
            task = asyncio.ensure_future(self._add())
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _acquire(self) -> Sandbox:
        if self.closed:
            raise RuntimeError("the sandbox pool is closed")
        sb = self._ready.pop() if self._ready else await self._new()
        self._refill_soon()
        return sb

    async def _release(self, sandbox: Sandbox) -> None:
        if sandbox.closed:
            return
        if self.closed or len(self._ready) >= self.size:
            await sandbox.close()
            return
        try:  # processes first (they could write on), then every file
            await sandbox.reset_to(tar_of_files({}))
        except Exception:
            await sandbox.close()  # a sandbox that cannot be wiped is never handed out again
            return
        self._ready.append(sandbox)

    async def _close(self) -> None:
        self.closed = True
        if self._filling:
            await asyncio.gather(*self._filling, return_exceptions=True)
        ready, self._ready = self._ready, []
        await asyncio.gather(*(sb.close() for sb in ready), return_exceptions=True)
