"""Continuous batching for ``toolgym serve``: requests join and leave the running batch between decode steps.

Two parts:

* ``DecodeEngine`` owns the running batch on the policy's worker thread: one KV cache, one
  attention mask and one row of decoding state per live request. ``step(admit, drop)``
  prefills the admitted prompts, joins them to the batch (the shorter side is left-padded with
  masked columns), samples one token for every live row, retires the rows that finished, and
  runs one forward pass for the rest. Prefill, sampling and log-prob rules are those of
  ``toolgym.policies.generation``, so a request's tokens are the ones it gets alone: each row
  draws from its own seeded generator, positions count only its real tokens, and padding is
  masked out (equal up to float rounding, as for static batches).
* ``Scheduler`` is the asyncio side: ``submit`` queues a job and waits for its result;
  ``run`` loops, admitting waiting jobs (up to ``max_batch`` live rows) before every step and
  answering each job the step it finishes. A 4-token request that arrives while a 1,500-token
  one runs is admitted at the next step and answered four steps later. A caller that stops
  waiting (cancelled) frees its row at the next step.

``continuous=False`` keeps the old static behaviour (a batch runs to completion before the
next is admitted); the serve-latency benchmark compares the two.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from toolgym.policies.generation import (
    Generated,
    GenerationJob,
    _prefill,
    _result,
    _Row,
    _sample_step,
    router_logits_off,
)
from toolgym.policies.hf_policy import HFPolicy, _overflow
from toolgym.policies.routing import RoutingHooks, last_position_routing
from toolgym.policy import PolicyError


class DecodeEngine:
    """The running batch of one model: rows, KV cache, mask, last positions and next logits.

    Not thread-safe: call ``step`` from one thread at a time (the policy's worker thread).

    Args:
        model: A transformers causal LM in eval mode whose cache layers are plain
            full-attention ``DynamicLayer``s (keys and values shaped ``(B, H, T, D)``).
        pad_id: Id placed in padding columns (masked out).
        end_ids: Ids that end a turn.
        max_context: Longest prompt plus generation.
        decode: Token ids to text, special tokens kept.
        record_routing: Record each sampled token's routed experts (``Generated.routed_experts``).
    """

    def __init__(self, model: Any, *, pad_id: int, end_ids: set[int], max_context: int, decode: Callable[[list[int]], str],
                 record_routing: bool = False):
        self.model, self.pad_id, self.end_ids, self.max_context, self.decode = model, pad_id, end_ids, max_context, decode
        self.hooks = RoutingHooks(model, field="record_routing") if record_routing else None
        self.routed: list[Any] = []  # with hooks: (L, k) experts of each row's last forward position
        self.keys: list[int] = []
        """Caller's key of each live row, in batch order."""
        self.rows: list[_Row] = []
        self.cache: Any = None
        self.mask: Any = None  # (B, T) 1 on real tokens, 0 on padding
        self.positions: Any = None  # (B, 1) position of each row's last token
        self.logits: Any = None  # (B, V) logits for each row's next token

    def __len__(self) -> int:
        return len(self.rows)

    def step(self, admit: Sequence[tuple[int, GenerationJob]], drop: Collection[int] = ()) -> list[tuple[int, Generated]]:
        """Admit ``admit``, drop rows whose key is in ``drop``, decode one token for every row.

        Returns:
            ``(key, result)`` for each row that finished at this step.
        """
        import torch

        with torch.inference_mode(), router_logits_off(self.model), self.hooks or contextlib.nullcontext():
            if drop:
                self._select([b for b, key in enumerate(self.keys) if key not in drop])
            if admit:
                self._join(admit)
            if not self.rows:
                return []
            device = self.logits.device
            _sample_step(self.rows, self.logits, device, self.end_ids, self.decode, self.routed if self.hooks else None)
            done = [(key, _result(row, self.end_ids, self.decode)) for key, row in zip(self.keys, self.rows, strict=True) if row.finish]
            if done:
                self._select([b for b, row in enumerate(self.rows) if row.finish is None])
            if self.rows:
                self._forward(device)
        return done

    def reset(self) -> None:
        """Forget every row (after a failed step)."""
        self.keys, self.rows, self.routed = [], [], []
        self.cache = self.mask = self.positions = self.logits = None

    # ------------------------------------------------------------------ batch surgery

    def _forward(self, device: Any) -> None:
        import torch

        step = torch.tensor([[row.ids[-1]] for row in self.rows], device=device)  # (B, 1)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)  # (B, T + 1)
        self.positions = self.positions + 1  # (B, 1)
        out = self.model(
            input_ids=step, attention_mask=self.mask, position_ids=self.positions, past_key_values=self.cache, use_cache=True
        )
        self.logits = out.logits[:, -1, :].float()  # (B, V)
        if self.hooks:
            self.routed = last_position_routing(self.hooks, len(self.rows)).tolist()  # (B, L, k)

    def _join(self, admit: Sequence[tuple[int, GenerationJob]]) -> None:
        """Prefill the admitted prompts and append them to the batch."""
        import torch

        jobs = [job for _, job in admit]
        logits, cache, mask, positions = _prefill(self.model, jobs, self.pad_id, self.logits.device if self.rows else _device(self.model))
        rows = [_Row(job, min(job.sampling.max_new_tokens, self.max_context - len(job.prompt_ids))) for job in jobs]
        if self.hooks:
            self.routed = self.routed + last_position_routing(self.hooks, len(jobs)).tolist()  # (B, L, k)
        if not self.rows:
            self.cache, self.mask, self.positions, self.logits = cache, mask, positions, logits
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            old_layers, new_layers = _layers(self.cache), _layers(cache)
            for old, new in zip(old_layers, new_layers, strict=True):
                # Left padding keeps every row's last token in the last column: one decode step for all.
                old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)], dim=0)  # (B, H, T, Dk)
                old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)], dim=0)  # (B, H, T, Dv)
            self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(mask, width)], dim=0)  # (B, T)
            self.positions = torch.cat([self.positions, positions], dim=0)  # (B, 1)
            self.logits = torch.cat([self.logits, logits], dim=0)  # (B, V)
        self.keys += [key for key, _ in admit]
        self.rows += rows

    def _select(self, keep: list[int]) -> None:
        """Keep only the rows at batch positions ``keep``; trim columns no row uses any more."""
        import torch

        if len(keep) == len(self.rows):
            return
        if not keep:
            self.reset()
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.logits = self.mask[index], self.positions[index], self.logits[index]
        self.keys, self.rows = [self.keys[b] for b in keep], [self.rows[b] for b in keep]
        self.routed = [self.routed[b] for b in keep] if self.hooks else []
        # A long row that left may leave leading columns that are padding for every remaining row.
        first = int(self.mask.any(dim=0).int().argmax())
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in _layers(self.cache):
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _layers(cache: Any) -> list[Any]:
    layers = list(cache.layers)
    for layer in layers:
        if type(layer).__name__ != "DynamicLayer":
            raise NotImplementedError(
                f"continuous batching needs full-attention cache layers; this model has {type(layer).__name__} "
                "(serve it with continuous=False)"
            )
    return layers


def _pad_left(tensor: Any, width: int) -> Any:
    """Zero-pad dimension -2 (mask: dimension 1) on the left up to ``width``."""
    import torch

    if tensor.dim() == 2:  # a (B, T) mask
        missing = width - tensor.shape[1]
        return tensor if missing == 0 else torch.cat([tensor.new_zeros((tensor.shape[0], missing)), tensor], dim=1)
    missing = width - tensor.shape[-2]
    if missing == 0:
        return tensor
    shape = (*tensor.shape[:-2], missing, tensor.shape[-1])
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


# --------------------------------------------------------------------------- asyncio side


@dataclass
class _Waiting:
    key: int
    job: GenerationJob
    future: asyncio.Future[Generated | PolicyError]


class Scheduler:
    """Feeds a ``DecodeEngine`` from concurrent ``submit`` calls (see the module docstring).

    Args:
        policy: The local policy; its model, tokenizer rules and worker thread are used.
        max_batch: Most rows decoded together.
        wait_s: How long the first job to reach an idle engine waits for company.
        continuous: Admit new jobs between steps (True) or only once the batch is empty (False).
    """

    def __init__(self, policy: HFPolicy, *, max_batch: int = 32, wait_s: float = 0.005, continuous: bool = True):
        self.policy, self.max_batch, self.wait_s, self.continuous = policy, max_batch, wait_s, continuous
        self.engine = DecodeEngine(
            policy.model, pad_id=policy.pad_id, end_ids=policy.end_ids, max_context=policy.max_context,
            decode=policy._decode, record_routing=policy.record_routing,
        )
        self.steps = 0
        """Decode steps run so far."""
        self.batches = 0
        """Admission rounds (groups of jobs prefilled together) so far."""
        self.jobs = 0
        """Jobs admitted so far."""
        self._keys = itertools.count()
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._running: dict[int, asyncio.Future[Generated | PolicyError]] = {}
        self._wake: asyncio.Event | None = None

    @property
    def running(self) -> int:
        """Jobs in the running batch."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Jobs queued for admission."""
        return len(self._waiting)

    async def submit(self, job: GenerationJob) -> Generated | PolicyError:
        """The result of one job (once ``run`` is running); cancelling the caller frees its row at the next step."""
        if len(job.prompt_ids) >= self.policy.max_context:
            return _overflow(len(job.prompt_ids), self.policy.max_context)
        future: asyncio.Future[Generated | PolicyError] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(next(self._keys), job, future))
        self._event().set()
        return await future  # a cancelled future is noticed by run() and its row dropped

    async def run(self) -> None:
        """Decode until cancelled; jobs still running or waiting then get a ``model_error``."""
        try:
            await self._loop()
        finally:  # the engine is left alone: a step may still be running on the worker thread
            stopped = PolicyError(kind="model_error", message="the scheduler stopped")
            futures = [*self._running.values(), *(item.future for item in self._waiting)]
            self._running.clear()
            self._waiting.clear()
            for future in futures:
                if not future.done():
                    future.set_result(stopped)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._running:
                await self._idle()
            admit = self._admit()
            drop = {key for key, future in self._running.items() if future.done()}
            for key in drop:
                del self._running[key]
            try:
                done = await loop.run_in_executor(self.policy.executor, self.engine.step, admit, drop)
            except Exception as exc:  # keep serving: fail the running requests, not the server
                self._fail_running(exc)
                continue
            self.steps += 1
            for key, result in done:
                future = self._running.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(result)

    async def _idle(self) -> None:
        """Wait for a job, then ``wait_s`` for company."""
        wake = self._event()
        while not self._waiting:
            wake.clear()
            await wake.wait()
        if self.wait_s > 0 and len(self._waiting) < self.max_batch:
            await asyncio.sleep(self.wait_s)

    def _event(self) -> asyncio.Event:
        if self._wake is None:  # created on the running loop, by whichever of submit and run comes first
            self._wake = asyncio.Event()
        return self._wake

    def _admit(self) -> list[tuple[int, GenerationJob]]:
        if self._running and not self.continuous:
            return []
        admit = []
        while self._waiting and len(self._running) < self.max_batch:
            item = self._waiting.popleft()
            if item.future.done():  # the caller gave up while waiting
                continue
            self._running[item.key] = item.future
            admit.append((item.key, item.job))
        if admit:
            self.batches += 1
            self.jobs += len(admit)
        return admit

    def _fail_running(self, exc: Exception) -> None:
        error = PolicyError(kind="model_error", message=f"{type(exc).__name__}: {exc}"[:500])
        self.engine.reset()
        for future in self._running.values():
            if not future.done():
                future.set_result(error)
        self._running.clear()
