"""``toolgym serve``: an OpenAI-compatible HTTP server for a local model, batching requests continuously.

Requests join and leave the running batch between decode steps (``toolgym.policies.scheduler``):
a short request that arrives while a long one decodes is admitted at the next step and answered
as soon as it ends, so its latency does not depend on the long one's length. Each request keeps
its own seed, so its answer does not depend on what it was batched with.

Every malformed request gets a 4xx with an OpenAI-style error body (``serve_input``): bad or
hostile JSON, wrong types, oversized bodies (413), non-JSON content types (415). ``max_tokens``
above the server's limit (``max_tokens_limit``, default the model's context) is refused with a
400 naming the limit; a request within the limit whose prompt leaves less room stops at the
context with ``finish_reason="length"``. Endpoints:

* ``POST /v1/chat/completions``: messages and tools are rendered with the model's chat
  template. The answer's ``content`` is the raw generated text (tool calls stay as text, like
  vLLM without a tool parser), so a client sees exactly what the model wrote. A request with
  toolgym's ``prompt_prefix_token_ids`` extension continues from those ids and tokenizes only
  the new messages (``ChatRenderer.prompt_ids``), so multi-turn prompts stay token-faithful.
* ``POST /v1/completions``: the prompt is text or a list of token ids.
* ``GET /v1/models``, ``GET /health`` (admission rounds ``batches``, ``jobs``, decode ``steps``,
  ``running`` and ``waiting`` jobs, and how many chat prompts were extended from a client's
  prefix ids or rendered in full, and the served ``weights_version``).
* ``POST /v1/weights`` ``{"path": ..., "version": n}``: load a ``torch.save``'d state_dict from this
  machine into the model between decode steps (a trainer's weight sync, ``toolgym.trainers.system``).

Both generation endpoints return log-probs when asked (``logprobs``), and vLLM's extensions
``return_token_ids`` and ``return_tokens_as_token_ids`` (see ``toolgym.policies.openai_schema``).
Log-probs are raw model log-probs at temperature 1, as ``HFPolicy`` reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.formats.base import read_arguments
from toolgym.envs.types import (
    AssistantMessage,
    FunctionSpec,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)
from toolgym.errors import ConfigError
from toolgym.policies.chat import ChatRenderer, check_template_kwargs
from toolgym.policies.generation import Generated, GenerationJob
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.openai_schema import (
    TOKEN_ID_PREFIX,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    ErrorBody,
    ErrorResponse,
    TokenLogprob,
    Usage,
    WireMessage,
    WireTool,
)
from toolgym.policies.scheduler import Scheduler
from toolgym.policies.serve_input import MAX_BODY_BYTES, BadRequest, read_request
from toolgym.policy import PolicyError, SamplingParams

DEFAULT_MAX_TOKENS = 256
"""Generation budget of a request that names none (at most the server's ``max_tokens`` limit)."""
DISCONNECT_POLL_S = 0.1
"""How often a waiting request checks whether its client is still connected."""
MAX_STOP_STRINGS = 32
"""Most stop strings per request (each is searched for after every sampled token)."""
MAX_STOP_CHARS = 1000
"""Longest stop string."""


# --------------------------------------------------------------------------- wire -> toolgym


def wire_messages(messages: list[WireMessage]) -> list[Message]:
    """OpenAI chat messages as toolgym messages ("developer" counts as "system")."""
    out: list[Message] = []
    for m in messages:
        if m.role in ("system", "developer"):
            out.append(SystemMessage(content=m.text()))
        elif m.role == "user":
            out.append(UserMessage(content=m.text()))
        elif m.role == "tool":
            out.append(ToolMessage(tool_call_id=m.tool_call_id or "", name=m.name or "", content=m.text()))
        else:
            calls = []
            for i, call in enumerate(m.tool_calls or []):
                args = read_arguments(call.function.arguments)
                if isinstance(args, str):
                    raise BadRequest(f"messages: tool call {call.function.name!r} has {args}")
                calls.append(ToolCall(id=call.id or f"call_{i}", name=call.function.name, arguments=args))
            out.append(AssistantMessage(content=m.text(), tool_calls=calls))
    return out


def wire_tools(tools: list[WireTool] | None) -> list[ToolSpec]:
    """OpenAI tool dicts as toolgym tool specs (fields toolgym does not use are dropped)."""
    try:
        return [ToolSpec(function=FunctionSpec(name=t.function.name, description=t.function.description, parameters=t.function.parameters)) for t in tools or []]
    except ValueError as exc:
        raise BadRequest(f"tools: {exc}") from None


# --------------------------------------------------------------------------- the app


def create_app(
    policy: HFPolicy, *, model_name: str = "toolgym-local", max_batch: int = 32, wait_ms: float = 5.0,
    max_tokens_limit: int | None = None, max_body_bytes: int = MAX_BODY_BYTES, continuous: bool = True,
) -> Any:
    """The FastAPI application serving ``policy`` (see the module docstring for endpoints).

    Args:
        policy: The local model.
        model_name: Name reported by ``/v1/models``.
        max_batch: Most requests decoded together.
        wait_ms: How long the first request to reach an idle server waits for company.
        max_tokens_limit: Largest ``max_tokens`` a request may ask for (default: the model's
            context); a request asking for more gets a 400 naming the limit.
        max_body_bytes: Largest request body (413 above it).
        continuous: Continuous batching (default); False runs each batch to completion first.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    limit = int(max_tokens_limit or policy.max_context)
    if limit < 1 or max_batch < 1:
        raise ConfigError(f"max_tokens_limit and max_batch must be >= 1, got {limit} and {max_batch}")
    policy.max_batch_size = max_batch
    scheduler = Scheduler(policy, max_batch=max_batch, wait_s=wait_ms / 1000, continuous=continuous)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(scheduler.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastAPI(title="toolgym serve", lifespan=lifespan)
    app.state.scheduler = scheduler
    prompts = {"extended": 0, "rendered": 0}  # chat prompts built from a client's prefix ids vs rendered in full
    renderers: dict[str, ChatRenderer] = {}  # per distinct request chat_template_kwargs

    def error(status: int, message: str, code: str | None = None) -> JSONResponse:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(ErrorResponse(error=ErrorBody(message=message, type=kind, code=code)).model_dump(), status_code=status)

    @app.exception_handler(BadRequest)
    async def bad(_: Request, exc: BadRequest) -> JSONResponse:
        return error(exc.status, str(exc), exc.code)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:  # a server bug: still an OpenAI-style body
        return error(500, f"internal error: {type(exc).__name__}: {exc}"[:500])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok", "batches": scheduler.batches, "jobs": scheduler.jobs, "steps": scheduler.steps,
            "running": scheduler.running, "waiting": scheduler.waiting, "chat_prompts": dict(prompts),
            "weights_version": app.state.weights_version,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "toolgym"}]}

    # Plain Starlette routes: the handlers read and validate the raw body themselves (serve_input).
    async def chat(request: Request) -> Any:
        body = await read_request(request, ChatCompletionRequest, max_body_bytes)
        _check_plain(body.stream, body.n)
        try:
            messages, tools = wire_messages(body.messages), wire_tools(body.tools)
        except ValueError as exc:  # pydantic refused a converted message or tool: the client's input
            raise BadRequest(f"messages/tools: {_short(exc)}") from None
        prefix = _prompt_ids(policy, body.prompt_prefix_token_ids, "prompt_prefix_token_ids") if body.prompt_prefix_token_ids else None
        try:
            # With a prefix, only the new messages are tokenized: the model's earlier output keeps its ids.
            renderer = _renderer(policy, renderers, body.chat_template_kwargs)
            prompt = renderer.prompt_ids(messages, tools, prefix_ids=prefix, prefix_messages=body.prompt_prefix_messages)
        except ConfigError as exc:  # bad chat_template_kwargs, or a template that cannot render tool use with them
            raise BadRequest(f"chat_template_kwargs: {_short(exc)}") from None
        except Exception as exc:  # the template rejected this conversation: the client's input
            raise BadRequest(f"the chat template cannot render these messages: {type(exc).__name__}: {_short(exc)}") from None
        job = _job(prompt, body, body.max_completion_tokens or body.max_tokens, limit)
        prompts["extended" if prefix and prompt[: len(prefix)] == prefix else "rendered"] += 1
        result = await _submit_watching(scheduler, job, request)
        if isinstance(result, PolicyError):
            return _failure(error, result)
        return JSONResponse(_chat_response(policy, model_name, body, prompt, result).model_dump(exclude_none=True))

    async def completions(request: Request) -> Any:
        body = await read_request(request, CompletionRequest, max_body_bytes)
        _check_plain(body.stream, body.n)
        prompt = _prompt_ids(policy, body.prompt)
        result = await _submit_watching(scheduler, _job(prompt, body, body.max_tokens, limit), request)
        if isinstance(result, PolicyError):
            return _failure(error, result)
        return JSONResponse(_completion_response(policy, model_name, body, prompt, result).model_dump(exclude_none=True))

    async def weights(request: Request) -> Any:
        # A trainer's weight sync (toolgym.trainers.system): a torch.save'd state_dict on this machine, loaded on
        # the model's own thread, so it lands between decode steps; requests after it see the new version.
        body = await read_request(request, WeightUpdate, max_body_bytes)
        try:
            await asyncio.get_running_loop().run_in_executor(policy.executor, _load_weights, policy, body.path)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise BadRequest(f"path: cannot load weights from {body.path!r}: {_short(exc)}") from None
        app.state.weights_version = body.version
        return JSONResponse({"version": body.version})

    app.state.weights_version = 0
    app.add_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_route("/v1/weights", weights, methods=["POST"])
    return app


class WeightUpdate(BaseModel):
    """``POST /v1/weights``: load new weights into the served model."""

    model_config = ConfigDict(extra="forbid")

    path: str
    """A ``torch.save``'d ``state_dict`` readable by the server (tensors only: loaded with ``weights_only``)."""
    version: int = Field(ge=0)
    """The policy version these weights are (reported back, and by ``/health``)."""


def _load_weights(policy: HFPolicy, path: str) -> None:
    import torch

    policy.model.load_state_dict(torch.load(path, map_location=policy.model.device, weights_only=True))


async def _submit_watching(scheduler: Scheduler, job: GenerationJob, request: Any) -> Generated | PolicyError:
    """The job's result; a client that disconnects first frees the job's row (no tokens for nobody)."""
    task = asyncio.ensure_future(scheduler.submit(job))
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not task.done() and await request.is_disconnected():
            task.cancel()
            return PolicyError(kind="endpoint_error", message="the client closed the connection")
    return task.result()


def _check_plain(stream: bool, n: int) -> None:
    if stream:
        raise BadRequest("streaming is not supported by toolgym serve; send stream=false")
    if n != 1:
        raise BadRequest(f"n={n} is not supported; send one request per sample (n=1)")


def _renderer(policy: HFPolicy, cache: dict[str, ChatRenderer], kwargs: dict[str, Any] | None) -> ChatRenderer:
    """The policy's renderer, or one with the request's template arguments over the server's
    (kept per distinct set, so a template is probed once per set)."""
    if not kwargs:
        return policy.renderer
    merged = {**policy.renderer.chat_template_kwargs, **check_template_kwargs(kwargs)}
    key = json.dumps(merged, sort_keys=True, default=str)
    if key not in cache:
        if len(cache) >= 64:  # clients with ever-new arguments must not grow memory without bound
            cache.clear()
        cache[key] = ChatRenderer(policy.tokenizer, policy.end_ids, chat_template_kwargs=merged, history_rewrite=policy.renderer.history_rewrite)
    return cache[key]


def _prompt_ids(policy: HFPolicy, prompt: str | list[int], field: str = "prompt") -> list[int]:
    if isinstance(prompt, str):
        try:
            return list(policy.tokenizer.encode(prompt, add_special_tokens=False))
        except Exception as exc:  # text the tokenizer cannot take is the client's input
            raise BadRequest(f"{field}: the tokenizer cannot encode this text: {type(exc).__name__}") from None
    vocab = len(policy.tokenizer)
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad or not prompt:
        raise BadRequest(f"{field} token ids must be a non-empty list within [0, {vocab}); got {bad[:5] or 'an empty list'}")
    return list(prompt)


def _job(prompt: list[int], body: ChatCompletionRequest | CompletionRequest, max_tokens: int | None, limit: int) -> GenerationJob:
    if not prompt:
        raise BadRequest("the prompt is empty")
    if max_tokens is not None and max_tokens > limit:
        raise BadRequest(f"max_tokens={max_tokens} is over this server's limit of {limit}; ask for at most {limit}", "max_tokens_too_large")
    stop = body.stop_list()
    if len(stop) > MAX_STOP_STRINGS or any(not 0 < len(s) <= MAX_STOP_CHARS for s in stop):
        raise BadRequest(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings of at most {MAX_STOP_CHARS} characters")
    # Temperatures below 1e-5 are greedy (as in vLLM): dividing logits by them overflows float32.
    temperature = 0.0 if body.temperature < 1e-5 else body.temperature
    # The nucleus always keeps the top token; a top_p that rounds to 0 in float32 would keep none.
    top_p = max(body.top_p, 1e-6)
    sampling = SamplingParams(max_new_tokens=max_tokens or min(DEFAULT_MAX_TOKENS, limit), temperature=temperature, top_p=top_p, stop=stop)
    seed = body.seed if body.seed is not None else random.getrandbits(63)
    return GenerationJob(prompt_ids=prompt, seed=seed, sampling=sampling)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


def _failure(error: Any, result: PolicyError) -> Any:
    if result.kind == "context_overflow":
        return error(400, result.message, "context_length_exceeded")
    return error(500, f"{result.kind}: {result.message}")


def _token_text(policy: HFPolicy, token: int, as_ids: bool) -> str:
    if as_ids:
        return f"{TOKEN_ID_PREFIX}{token}"
    return policy.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _usage(prompt: list[int], result: Generated) -> Usage:
    return Usage(prompt_tokens=len(prompt), completion_tokens=len(result.token_ids), total_tokens=len(prompt) + len(result.token_ids))


def _routing(result: Generated) -> dict[str, Any]:
    """toolgym extension ``routed_experts`` (per generated id, per MoE layer, top-k ids) when the policy records routing."""
    return {"routed_experts": result.routed_experts} if result.routed_experts is not None else {}


def _chat_response(policy: HFPolicy, model: str, body: ChatCompletionRequest, prompt: list[int], result: Generated) -> ChatCompletionResponse:
    logprobs = None
    if body.logprobs:
        entries = [
            TokenLogprob(token=_token_text(policy, t, body.return_tokens_as_token_ids), logprob=lp)
            for t, lp in zip(result.token_ids, result.logprobs, strict=True)
        ]
        logprobs = ChoiceLogprobs(content=entries)
    choice = ChatChoice(
        message=WireMessage(role="assistant", content=result.text), finish_reason=result.finish_reason, logprobs=logprobs,
        token_ids=result.token_ids if body.return_token_ids else None, **_routing(result),
    )
    return ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=model, choices=[choice],
        usage=_usage(prompt, result), prompt_token_ids=prompt if body.return_token_ids else None,
    )


def _completion_response(policy: HFPolicy, model: str, body: CompletionRequest, prompt: list[int], result: Generated) -> CompletionResponse:
    logprobs = None
    if body.logprobs is not None:
        tokens = [_token_text(policy, t, body.return_tokens_as_token_ids) for t in result.token_ids]
        logprobs = CompletionLogprobs(tokens=tokens, token_logprobs=list(result.logprobs))
    choice = CompletionChoice(
        text=result.text, finish_reason=result.finish_reason, logprobs=logprobs,
        token_ids=result.token_ids if body.return_token_ids else None,
        prompt_token_ids=prompt if body.return_token_ids else None, **_routing(result),
    )
    return CompletionResponse(
        id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=model, choices=[choice], usage=_usage(prompt, result)
    )


# --------------------------------------------------------------------------- running it


def serve(
    model_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32, *,
    wait_ms: float = 5.0, device: str = "cpu", dtype: str = "float32", log_level: str = "info",
    max_tokens_limit: int | None = None, continuous: bool = True,
) -> None:
    """Load the model in ``model_dir`` and serve it until interrupted (blocking).

    Raises:
        ModelDirError: The folder, or its config, weights, tokenizer or chat template, is missing.
    """
    import uvicorn

    policy = HFPolicy.from_pretrained(model_dir, device=device, dtype=dtype, max_batch_size=max_batch)
    name = os.path.basename(os.path.normpath(str(model_dir))) or "toolgym-local"
    app = create_app(
        policy, model_name=name, max_batch=max_batch, wait_ms=wait_ms, max_tokens_limit=max_tokens_limit, continuous=continuous
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@contextlib.contextmanager
def serve_in_thread(
    policy: HFPolicy, *, host: str = "127.0.0.1", port: int = 0, max_batch: int = 32, wait_ms: float = 5.0, **app_options: Any
) -> Iterator[str]:
    """Serve ``policy`` from a background thread; yields the base URL (``http://host:port``).

    Port 0 picks a free port. The server stops when the block exits. ``app_options`` go to
    ``create_app`` (``max_tokens_limit``, ``max_body_bytes``, ``continuous``).
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    app = create_app(policy, max_batch=max_batch, wait_ms=wait_ms, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="toolgym-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"toolgym serve did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
