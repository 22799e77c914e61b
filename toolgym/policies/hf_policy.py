"""``HFPolicy``: a local Hugging Face causal LM as a batched toolgym policy.

The conversation is rendered with the tokenizer's chat template (``toolgym.policies.chat``),
prompts are grouped by length into batches of at most ``max_batch_size``, and each batch is
decoded by ``toolgym.policies.generation.generate_batch`` on the policy's worker thread, so the
event loop (and the environments on it) stays live while the model runs.

Every returned turn is token-faithful: ``prompt_token_ids`` are the ids the model saw (from the
second turn on, the previous turn's prompt and sampled ids plus only the new messages' tokens),
``token_ids`` the ids it sampled (end-of-turn token included), and ``logprobs`` the raw model
log-probabilities of those ids at temperature 1, whatever the sampling temperature and top-p
(see ``toolgym.policies.generation``). A prompt that leaves no room to generate within the
context gives a turn with a ``context_overflow`` error; a failing forward pass gives
``model_error`` turns for its batch only. Neither raises.

torch and transformers are imported when a policy is built, not when this module is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Sequence
from typing import Any

from toolgym.errors import ConfigError
from toolgym.policies.chat import ChatRenderer, HistoryRewrite
from toolgym.policies.generation import Generated, GenerationJob
from toolgym.policy import PolicyError, PolicyRequest, PolicyTurn


class HFPolicy:
    """Batched sampling from a local causal LM (any ``save_pretrained`` folder).

    Args:
        model: A transformers causal LM (put in eval mode by the caller or ``from_pretrained``).
        tokenizer: Its tokenizer, with a chat template.
        max_batch_size: Most sequences decoded together; larger requests lists are split.
        max_context: Longest prompt plus generation, in tokens (default: the model's
            ``max_position_embeddings``).
        chat_template_kwargs: Template variables for every render (``enable_thinking``,
            ``thinking``, ``reasoning_effort``...), as a deployment server would pass them.
        history_rewrite: What a turn does when the template renders history differently from
            what was sampled: ``"new_row"`` (prompt = deployment rendering; the rows start anew,
            counted as forks) or ``"keep_row"`` (keep the sampled ids; see ``ChatRenderer``).
        record_routing: Record each sampled token's routed experts per MoE layer
            (``PolicyTurn.routed_experts``) for routing replay; a model whose routers cannot be
            recorded (dense, unknown MoE) raises here.

    Example:
        ``policy = HFPolicy.from_pretrained(cached_tiny_model("kimi"))`` then
        ``run_episodes("toolgym/unitconv-v0", policy, n=8)``.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, max_batch_size: int = 32, max_context: int | None = None,
        chat_template_kwargs: dict[str, Any] | None = None, history_rewrite: HistoryRewrite = "new_row",
        record_routing: bool = False,
    ):
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if record_routing:
            from toolgym.policies.routing import moe_gates

            moe_gates(model, field="record_routing")  # fails before any work for a dense or unknown MoE model
        self.record_routing = record_routing
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_context = int(max_context or model.config.max_position_embeddings)
        self.pad_id = _pad_id(tokenizer)
        self.end_ids = _end_ids(model, tokenizer)
        self.renderer = ChatRenderer(
            tokenizer, end_ids=self.end_ids, chat_template_kwargs=chat_template_kwargs, history_rewrite=history_rewrite
        )
        self.batches = 0
        """Forward batches run so far (a diagnostic)."""
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="toolgym-hf-policy")
        """The one thread all model work runs on: decodes never overlap, and torch keeps a single
        OpenMP pool (pools of several threads spin against each other on a few cores)."""

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "float32",
        max_batch_size: int = 32, max_context: int | None = None, chat_template_kwargs: dict[str, Any] | None = None,
        history_rewrite: HistoryRewrite = "new_row", record_routing: bool = False,
    ) -> HFPolicy:
        """Load a policy from a local model folder.

        Raises:
            ModelDirError: The folder, or its config, weights, tokenizer or chat template, is missing.
        """
        from toolgym.policies.hf_model import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(model_dir, device=device, dtype=dtype)
        return cls(
            model, tokenizer, max_batch_size=max_batch_size, max_context=max_context,
            chat_template_kwargs=chat_template_kwargs, history_rewrite=history_rewrite, record_routing=record_routing,
        )

    # ------------------------------------------------------------------ Policy protocol

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        """One assistant turn per request, in order; failures are turns with ``error`` set."""
        turns: list[PolicyTurn | None] = [None] * len(requests)
        jobs: dict[int, GenerationJob] = {}
        for i, request in enumerate(requests):
            prepared = self._prepare(request)
            if isinstance(prepared, PolicyTurn):
                turns[i] = prepared
            else:
                jobs[i] = prepared
        results = await self.generate_ids(list(jobs.values()))
        for i, result in zip(jobs, results, strict=True):
            turns[i] = _to_turn(jobs[i], result)
        return [t for t in turns if t is not None]

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        """Continue tokenized prompts (the server's entry point); failures come back as errors.

        Jobs are sorted by prompt length and cut into batches of ``max_batch_size``, which
        changes no result (each job's sampling depends only on its own seed).
        """
        out: list[Generated | PolicyError | None] = [None] * len(jobs)
        pending = []
        for i, job in enumerate(jobs):
            if len(job.prompt_ids) >= self.max_context:
                out[i] = _overflow(len(job.prompt_ids), self.max_context)
            else:
                pending.append(i)
        pending.sort(key=lambda i: len(jobs[i].prompt_ids))
        for start in range(0, len(pending), self.max_batch_size):
            chunk = pending[start : start + self.max_batch_size]
            batch = [jobs[i] for i in chunk]
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self._run_batch, batch)
            for i, result in zip(chunk, results, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    def close(self) -> None:
        """Stop the worker thread (waiting for a running batch); the policy cannot generate after."""
        self.executor.shutdown(wait=True)

    # ------------------------------------------------------------------ helpers

    def render(self, request: PolicyRequest) -> list[int]:
        """The prompt token ids of a request (system prompt, tools, conversation, assistant opener).

        With ``request.prefix_token_ids`` the prompt is those ids plus the new messages' tokens
        only (``ChatRenderer.prompt_ids``), so earlier turns keep exactly the sampled ids.
        """
        return self.renderer.prompt_ids(
            request.messages, request.tools, prefix_ids=request.prefix_token_ids, prefix_messages=request.prefix_messages
        )

    def _prepare(self, request: PolicyRequest) -> GenerationJob | PolicyTurn:
        try:
            prompt = self.render(request)
        except Exception as exc:  # a template that cannot render this conversation fails one request
            return _error_turn("model_error", f"chat template failed: {type(exc).__name__}: {exc}")
        if len(prompt) >= self.max_context:
            error = _overflow(len(prompt), self.max_context)
            return PolicyTurn(prompt_token_ids=prompt, finish_reason="error", error=error)
        return GenerationJob(prompt_ids=prompt, seed=request.seed, sampling=request.sampling)

    def _run_batch(self, jobs: list[GenerationJob]) -> list[Generated | PolicyError]:
        from toolgym.policies.generation import generate_batch

        self.batches += 1
        try:
            return list(
                generate_batch(
                    self.model, jobs, pad_id=self.pad_id, end_ids=self.end_ids, max_context=self.max_context,
                    decode=self._decode, record_routing=self.record_routing,
                )
            )
        except Exception as exc:  # the model failed: this batch's requests fail, the rollout goes on
            error = PolicyError(kind="model_error", message=f"{type(exc).__name__}: {exc}"[:500])
            return [error] * len(jobs)

    def _decode(self, ids: list[int]) -> str:
        # Special tokens stay in the text: re-rendering the raw text must give back the same ids.
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _to_turn(job: GenerationJob, result: Generated | PolicyError) -> PolicyTurn:
    if isinstance(result, PolicyError):
        return PolicyTurn(prompt_token_ids=job.prompt_ids, finish_reason="error", error=result)
    return PolicyTurn(
        text=result.text, prompt_token_ids=job.prompt_ids, token_ids=result.token_ids, logprobs=result.logprobs,
        finish_reason=result.finish_reason, routed_experts=result.routed_experts,
    )


def _overflow(prompt_len: int, max_context: int) -> PolicyError:
    return PolicyError(
        kind="context_overflow",
        message=f"prompt is {prompt_len} tokens but the context holds {max_context}, leaving no room to generate",
    )


def _error_turn(kind: Any, message: str) -> PolicyTurn:
    return PolicyTurn(finish_reason="error", error=PolicyError(kind=kind, message=message[:500]))


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ConfigError("the tokenizer has neither a pad token nor an eos token; set tokenizer.pad_token")
    return int(pad)


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-turn ids: the tokenizer's eos plus the generation config's eos id(s)."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if not ids:
        raise ConfigError("the model has no end-of-turn token (tokenizer.eos_token_id and generation_config.eos_token_id are unset)")
    return ids
