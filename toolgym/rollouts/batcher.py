"""``RequestBatcher``: turns many concurrent ``generate(request)`` awaits into batched calls.

Episodes await ``batcher.generate(request)`` one request at a time. The batcher waits until
the event loop has no more runnable episodes (every live episode is waiting on the policy or
on something slow), then sends all pending requests in one ``policy.generate`` call.

``batching(policy)`` gives the same batching behind the ``Policy`` interface, for code that
calls ``generate([request])`` from many concurrent tasks (judges, critics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from toolgym.policy import Policy, PolicyError, PolicyRequest, PolicyTurn


class RequestBatcher:
    """Collects requests from concurrent episodes and calls the policy once per batch.

    Use as ``async with RequestBatcher(policy) as batcher: ...``.

    Args:
        policy: The policy to call.
        max_batch: Most requests per call (None: all pending).
    """

    def __init__(self, policy: Policy, max_batch: int | None = None):
        self.policy = policy
        self.max_batch = max_batch
        self.batches = 0
        """Number of ``policy.generate`` calls made (a diagnostic)."""
        self._pending: list[tuple[PolicyRequest, asyncio.Future[PolicyTurn]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RequestBatcher:
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def generate(self, request: PolicyRequest) -> PolicyTurn:
        """The policy's turn for one request (batched with whatever else is pending)."""
        future: asyncio.Future[PolicyTurn] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._wakeup.set()
        return await future

    async def _serve(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._settle()
            batch = self._pending if self.max_batch is None else self._pending[: self.max_batch]
            self._pending = self._pending[len(batch) :]
            if self._pending:
                self._wakeup.set()
            if batch:
                await self._run(batch)

    async def _settle(self) -> None:
        """Yield to the loop until no episode adds a request (all runnable ones have arrived)."""
        while True:
            count = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == count:
                return

    async def _run(self, batch: list[tuple[PolicyRequest, asyncio.Future[PolicyTurn]]]) -> None:
        self.batches += 1
        requests = [r for r, _ in batch]
        try:
            turns = await self.policy.generate(requests)
            if len(turns) != len(requests):
                raise ValueError(f"policy returned {len(turns)} turns for {len(requests)} requests")
        except Exception as exc:  # the whole call failed: every request in it gets a policy error
            error = PolicyError(kind="model_error", message=f"{type(exc).__name__}: {exc}"[:500])
            turns = [PolicyTurn(finish_reason="error", error=error) for _ in requests]
        for (_, future), turn in zip(batch, turns, strict=True):
            if not future.done():
                future.set_result(turn)


class BatchedPolicy:
    """A ``Policy`` view of a ``RequestBatcher``: concurrent single requests become one batch."""

    def __init__(self, batcher: RequestBatcher):
        self.batcher = batcher

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        """The turns for ``requests``, each joining whatever batch is forming."""
        return [await self.batcher.generate(r) for r in requests]


@contextlib.asynccontextmanager
async def batching(policy: Policy, max_batch: int | None = None) -> AsyncIterator[BatchedPolicy]:
    """``policy`` behind a ``RequestBatcher`` for the duration of the block.

    Judge calls for many episodes run concurrently, one request each; batching them lets a
    local model decode them together instead of one forward pass per judgement.
    """
    async with RequestBatcher(policy, max_batch=max_batch) as batcher:
        yield BatchedPolicy(batcher)
