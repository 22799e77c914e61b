"""``OpenAIPolicy``: any OpenAI-compatible endpoint (vLLM, SGLang, ``toolgym serve``, hosted APIs).

Each request becomes one HTTP call, sent concurrently up to ``max_concurrency``. Refusals
(429), server errors (5xx), dropped connections and timeouts are retried with exponential
backoff; whatever still fails becomes a ``PolicyTurn`` with a typed ``error`` (never an
exception), so one bad request ends only its own episode. Requests are isolated: an answer
that cannot be read (not JSON, hostile JSON, the wrong shape, a body that cannot be decoded)
is a ``bad_response`` for its own request only, and anything unforeseen in one request's
path is an ``endpoint_error`` for that request, never an exception that fails its batch.

What is read from an answer:

* the text: ``message.content`` (chat) or ``text`` (completions). When a server returns
  structured ``tool_calls`` (a server-side tool parser, a hosted API), they are rendered back
  into text with the env's tool-call format (``tool_format``), so the episode stays parseable;
* token ids: ``choices[0].token_ids`` (vLLM ``return_token_ids``), else the ids in
  ``"token_id:<id>"`` log-prob tokens (vLLM ``return_tokens_as_token_ids``);
* prompt ids: top-level or per-choice ``prompt_token_ids``, or the ids this client sent;
* log-probs: ``logprobs.content[i].logprob`` (chat) or ``logprobs.token_logprobs`` (completions).
  vLLM reports raw model log-probs (temperature 1), the same quantity ``HFPolicy`` reports.

Multi-turn token faithfulness: with ``token_ids=True`` a request that continues an episode
also sends toolgym's ``prompt_prefix_token_ids`` extension (the previous turn's prompt and
sampled ids), which ``toolgym serve`` extends with only the new messages' tokens. A server that
ignores it re-renders the conversation; ``toolgym.rollouts.rows`` then counts a fork instead of
merging mismatched tokens. With ``api="completions"`` and a ``ChatRenderer``, the client extends
the ids itself.

``token_ids=True`` (default) sends vLLM's ``return_token_ids`` and ``return_tokens_as_token_ids``
fields; turn it off for hosted APIs that reject unknown fields, and use ``history="structured"``
there (see ``toolgym.policies.chat``).
"""

from __future__ import annotations

import asyncio
import random
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from toolgym.envs import safejson
from toolgym.envs.formats import get_format
from toolgym.envs.formats.base import read_arguments
from toolgym.envs.types import Message, ToolCall, ToolSpec
from toolgym.errors import ConfigError
from toolgym.policies.chat import History, check_template_kwargs, to_chat_dicts, tool_dicts
from toolgym.policies.openai_schema import (
    ChatCompletionResponse,
    CompletionResponse,
    WireMessage,
    token_id_of,
)
from toolgym.policy import PolicyError, PolicyErrorKind, PolicyRequest, PolicyTurn

PromptRenderer = Callable[[Sequence[Message], Sequence[ToolSpec]], "list[int] | str"]
_OVERFLOW = re.compile(r"context length|context window|maximum context|too long|too many tokens", re.IGNORECASE)
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop", "eos": "stop"}


class OpenAIPolicy:
    """A policy behind an OpenAI-compatible HTTP endpoint.

    Args:
        base_url: Server root, with or without ``/v1`` (``http://127.0.0.1:8000``).
        model: Model name sent with each request.
        api_key: Sent as a bearer token when given.
        api: ``"chat"`` (``/v1/chat/completions``) or ``"completions"`` (``/v1/completions``,
            which needs ``prompt_renderer``).
        tool_format: Format used to write structured ``tool_calls`` back as text; use the env's.
        history: How past assistant turns are sent (``"raw"`` or ``"structured"``).
        max_concurrency: Requests in flight at once (per event loop).
        timeout_s: Deadline of one HTTP attempt.
        max_retries: Retries after the first attempt on 429, 5xx, connection errors, timeouts.
        backoff_s: First retry delay; doubled each retry (with jitter), capped at ``max_backoff_s``.
        max_backoff_s: Longest delay between attempts.
        logprobs: Ask for log-probs.
        token_ids: Ask for token ids with vLLM's extension fields (see the module docstring).
        extra_body: Fields merged into every request body.
        prompt_renderer: For ``api="completions"``: conversation and tools to a prompt (token
            ids, or text), e.g. ``ChatRenderer(tokenizer)``.
        chat_template_kwargs: Template variables (``enable_thinking``, ``thinking``,
            ``reasoning_effort``...) sent as the request field vLLM, SGLang and ``toolgym serve``
            read (``api="chat"``); with ``api="completions"`` give them to the ``ChatRenderer``.
        transport: An httpx transport (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self, base_url: str, model: str = "", *, api_key: str | None = None,
        api: Literal["chat", "completions"] = "chat", tool_format: str = "hermes", history: History = "raw",
        max_concurrency: int = 64, timeout_s: float = 120.0, max_retries: int = 3, backoff_s: float = 0.5,
        max_backoff_s: float = 8.0, logprobs: bool = True, token_ids: bool = True,
        extra_body: dict[str, Any] | None = None, prompt_renderer: PromptRenderer | None = None,
        transport: httpx.AsyncBaseTransport | None = None, chat_template_kwargs: dict[str, Any] | None = None,
    ):
        if api not in ("chat", "completions"):
            raise ConfigError(f"api must be 'chat' or 'completions', got {api!r}")
        if api == "completions" and prompt_renderer is None:
            raise ConfigError("api='completions' needs prompt_renderer=... (e.g. ChatRenderer(tokenizer)) to build prompts")
        if max_concurrency < 1 or max_retries < 0:
            raise ConfigError(f"max_concurrency must be >= 1 and max_retries >= 0, got {max_concurrency} and {max_retries}")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.model, self.api, self.history = model, api, history
        self.format = get_format(tool_format)
        self.max_concurrency, self.timeout_s, self.max_retries = max_concurrency, timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.logprobs, self.token_ids = logprobs, token_ids
        self.extra_body = dict(extra_body or {})
        self.chat_template_kwargs = check_template_kwargs(chat_template_kwargs)
        if self.chat_template_kwargs and api == "completions":
            raise ConfigError("chat_template_kwargs go to the prompt renderer with api='completions': ChatRenderer(tokenizer, chat_template_kwargs=...)")
        self.prompt_renderer = prompt_renderer
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.transport = transport
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        """One turn per request, in order; failures are turns with ``error`` set."""
        gate = self._gate()
        limits = httpx.Limits(max_connections=self.max_concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout_s, limits=limits, transport=self.transport
        ) as client:
            return list(await asyncio.gather(*(self._isolated(client, gate, r) for r in requests)))

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = asyncio.Semaphore(self.max_concurrency)
        return self._gates[loop]

    # ------------------------------------------------------------------ one request

    async def _isolated(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request: PolicyRequest) -> PolicyTurn:
        """``_one``, with anything unforeseen (a transport bug, say) failing only this request."""
        try:
            return await self._one(client, gate, request)
        except Exception as exc:  # one request's failure must not reach asyncio.gather and sink its batch
            return _failed("endpoint_error", f"request to {self.base_url} failed: {type(exc).__name__}: {_short(exc)}")

    async def _one(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request: PolicyRequest) -> PolicyTurn:
        try:
            path, body, sent_ids = self._body(request)
        except Exception as exc:  # the local prompt renderer failed on this conversation
            return _failed("model_error", f"could not build the request: {type(exc).__name__}: {exc}")
        async with gate:
            data = await self._post(client, path, body)
        if isinstance(data, PolicyError):
            return PolicyTurn(prompt_token_ids=sent_ids, finish_reason="error", error=data)
        try:
            return self._read_chat(data) if self.api == "chat" else self._read_completion(data, sent_ids)
        except (ValidationError, ValueError, TypeError) as exc:
            return _failed("bad_response", f"unreadable answer from {self.base_url}{path}: {_short(exc)}")
        except Exception as exc:  # any other shape this reader did not foresee is still this answer's fault
            return _failed("bad_response", f"unreadable answer from {self.base_url}{path}: {type(exc).__name__}: {_short(exc)}")

    def _body(self, request: PolicyRequest) -> tuple[str, dict[str, Any], list[int] | None]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p,
            "seed": request.seed,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if self.token_ids:
            body.update(return_token_ids=True, return_tokens_as_token_ids=True)
        sent_ids = None
        if self.api == "chat":
            path = "/chat/completions"
            body["messages"] = to_chat_dicts(request.messages, history=self.history, arguments="json")
            if request.tools:
                body["tools"] = tool_dicts(request.tools)
            if self.logprobs:
                body["logprobs"] = True
            if self.chat_template_kwargs:
                body["chat_template_kwargs"] = dict(self.chat_template_kwargs)
            if self.token_ids and request.prefix_token_ids:
                # toolgym serve continues from these ids; servers that ignore them re-render (a counted fork).
                body.update(prompt_prefix_token_ids=request.prefix_token_ids, prompt_prefix_messages=request.prefix_messages)
        else:
            path = "/completions"
            prompt = self._completion_prompt(request)
            sent_ids = list(prompt) if isinstance(prompt, list) else None
            body["prompt"] = prompt
            if self.logprobs:
                body["logprobs"] = 0
        body.update(self.extra_body)
        return path, body, sent_ids

    def _completion_prompt(self, request: PolicyRequest) -> list[int] | str:
        """A ``ChatRenderer`` extends the previous turn's ids; any other renderer renders in full."""
        extend = getattr(self.prompt_renderer, "prompt_ids", None)
        if extend is not None and request.prefix_token_ids:
            return extend(request.messages, request.tools, prefix_ids=request.prefix_token_ids, prefix_messages=request.prefix_messages)
        return self.prompt_renderer(request.messages, request.tools)  # type: ignore[misc]  # a callable attribute, not a method

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any] | PolicyError:
        """POST with retries; the decoded JSON object, or the error of the last attempt."""
        error = PolicyError(kind="endpoint_error", message="no attempt made")
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            try:
                response = await client.post(path, json=body)
            except httpx.TimeoutException:
                error = PolicyError(kind="timeout", message=f"no answer from {self.base_url}{path} within {self.timeout_s}s")
                continue
            except httpx.TransportError as exc:
                error = PolicyError(kind="endpoint_error", message=f"cannot reach {self.base_url}{path}: {_short(exc)}")
                continue
            except httpx.DecodingError as exc:  # the body cannot be decoded (a broken gzip stream...): unreadable
                return PolicyError(kind="bad_response", message=f"answer from {self.base_url}{path} cannot be decoded: {_short(exc)}")
            except httpx.HTTPError as exc:  # e.g. too many redirects
                error = PolicyError(kind="endpoint_error", message=f"request to {self.base_url}{path} failed: {_short(exc)}")
                continue
            if response.status_code == 429 or response.status_code >= 500:
                error = _http_error(response, f"{self.base_url}{path}")
                continue
            if response.status_code >= 400:
                return _http_error(response, f"{self.base_url}{path}")
            try:  # the safe loader: deep nesting or huge numbers are a bad_response, not a crash
                data = safejson.loads(response.content)
            except ValueError:
                return PolicyError(kind="bad_response", message=f"answer from {self.base_url}{path} is not JSON: {response.text[:200]!r}")
            if not isinstance(data, dict):
                return PolicyError(kind="bad_response", message=f"answer from {self.base_url}{path} is not a JSON object")
            return data
        attempts = self.max_retries + 1
        return error.model_copy(update={"message": f"{error.message} (gave up after {attempts} attempt{'s' * (attempts > 1)})"})

    def _delay(self, attempt: int) -> float:
        # Jitter spreads the retries of many episodes that failed together.
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)

    # ------------------------------------------------------------------ answers

    def _read_chat(self, data: dict[str, Any]) -> PolicyTurn:
        response = ChatCompletionResponse.model_validate(data)
        choice = response.choices[0]
        entries = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
        logprobs = [e.logprob for e in entries] or None
        ids = choice.token_ids if choice.token_ids is not None else _ids_from_tokens([e.token for e in entries])
        prompt_ids = response.prompt_token_ids or choice.prompt_token_ids
        return _turn(self._text(choice.message), prompt_ids, ids, logprobs, choice.finish_reason,
                     getattr(choice, "routed_experts", None))

    def _read_completion(self, data: dict[str, Any], sent_ids: list[int] | None) -> PolicyTurn:
        choice = CompletionResponse.model_validate(data).choices[0]
        lp = choice.logprobs
        logprobs = [float(x) for x in lp.token_logprobs if x is not None] if lp and lp.token_logprobs else None
        ids = choice.token_ids if choice.token_ids is not None else _ids_from_tokens(lp.tokens if lp else [])
        return _turn(choice.text, choice.prompt_token_ids or sent_ids, ids, logprobs, choice.finish_reason,
                     getattr(choice, "routed_experts", None))

    def _text(self, message: WireMessage) -> str:
        """The assistant text, with structured tool calls written back in the env's format."""
        content = message.text()
        if not message.tool_calls:
            return content
        calls: list[ToolCall] = []
        unreadable: list[tuple[str, Any]] = []
        for i, call in enumerate(message.tool_calls):
            args = read_arguments(call.function.arguments)
            if isinstance(args, str):
                # Written in the env's own format so that it parses as a parse_error in every format.
                unreadable.append((call.function.name, call.function.arguments))
            else:
                calls.append(ToolCall(id=call.id or f"call_{i}", name=call.function.name, arguments=args))
        return self.format.render_turn(content, calls, unreadable)


def _turn(text: str, prompt_ids: list[int] | None, ids: list[int] | None, logprobs: list[float] | None, finish: str | None,
          routed: Any = None) -> PolicyTurn:
    if ids is not None and logprobs is not None and len(ids) != len(logprobs):
        raise ValueError(f"{len(ids)} token ids but {len(logprobs)} log-probs")
    if routed is not None and (ids is None or len(routed) != len(ids)):  # toolgym serve's routed_experts: one per id
        raise ValueError(f"routed_experts has {len(routed)} entries for {len(ids or [])} token ids")
    return PolicyTurn(
        text=text, prompt_token_ids=prompt_ids, token_ids=ids, logprobs=logprobs,
        finish_reason=_FINISH.get(finish or "stop", "stop"), routed_experts=routed,
    )


def _ids_from_tokens(tokens: list[str]) -> list[int] | None:
    ids = [token_id_of(t) for t in tokens]
    return [i for i in ids if i is not None] if tokens and all(i is not None for i in ids) else None


def _http_error(response: httpx.Response, url: str) -> PolicyError:
    """A typed error from an HTTP error answer; prompts that do not fit become context_overflow."""
    try:
        detail = safejson.loads(response.content).get("error", {})
        message = str(detail.get("message") or detail) if isinstance(detail, dict) else str(detail)
        code = detail.get("code") if isinstance(detail, dict) else None
    except (ValueError, AttributeError):
        message, code = response.text[:300], None
    kind: PolicyErrorKind = "endpoint_error"
    if response.status_code == 400 and (code == "context_length_exceeded" or _OVERFLOW.search(message)):
        kind = "context_overflow"
    return PolicyError(kind=kind, message=f"HTTP {response.status_code} from {url}: {message[:300]}")


def _failed(kind: PolicyErrorKind, message: str) -> PolicyTurn:
    return PolicyTurn(finish_reason="error", error=PolicyError(kind=kind, message=message[:500]))


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
