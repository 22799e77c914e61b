"""The OpenAI-compatible wire format, as pydantic models shared by the client and the server.

Only the fields toolgym reads or writes are declared; every model accepts extra fields, so
requests from other clients and answers from other servers (vLLM, SGLang, hosted APIs)
validate without loss. Two vLLM extensions carry the training truth:

* ``return_token_ids`` (request) puts the prompt's ids in ``prompt_token_ids`` (top level for
  chat, per choice for completions) and the generated ids in ``choices[i].token_ids``;
* ``return_tokens_as_token_ids`` (request) writes each log-prob entry's ``token`` as
  ``"token_id:<id>"``, so ids survive even where ``token_ids`` is absent.

One toolgym extension keeps multi-turn prompts token-faithful: a chat request may carry
``prompt_prefix_token_ids`` and ``prompt_prefix_messages`` (see ``ChatCompletionRequest``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TOKEN_ID_PREFIX = "token_id:"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- messages and tools


class WireFunctionCall(_Wire):
    name: str
    arguments: str | dict[str, Any] = ""
    """A JSON string in the OpenAI API; some servers send an object."""


class WireToolCall(_Wire):
    id: str = ""
    type: str = "function"
    function: WireFunctionCall


class WireMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    """Text, or a list of content parts (only ``text`` parts are read)."""
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        """The content as plain text (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


class WireFunction(_Wire):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class WireTool(_Wire):
    type: Literal["function"] = "function"
    function: WireFunction


# --------------------------------------------------------------------------- requests


class _SamplingFields(_Wire):
    model: str = ""
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    return_token_ids: bool = False
    return_tokens_as_token_ids: bool = False

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions`` body."""

    messages: list[WireMessage] = Field(min_length=1)
    tools: list[WireTool] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    prompt_prefix_token_ids: list[int] | None = None
    """toolgym extension: the previous turn's prompt ids followed by its sampled ids. The server
    then tokenizes only the messages after the first ``prompt_prefix_messages`` and appends them,
    so the model's own output is never re-tokenized. Servers that ignore it re-render the
    conversation, and the client's rows count that turn as a fork."""
    prompt_prefix_messages: int = Field(default=0, ge=0)
    """toolgym extension: how many leading ``messages`` ``prompt_prefix_token_ids`` covers."""
    chat_template_kwargs: dict[str, Any] | None = None
    """Template variables for this request (``enable_thinking``, ``thinking``, ``reasoning_effort``...),
    as vLLM and SGLang accept them; they override the server's own."""


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions`` body; the prompt is text or a list of token ids."""

    prompt: str | list[int]
    max_tokens: int = Field(default=16, ge=1)
    logprobs: int | None = None
    """Number of alternatives per token in the OpenAI API; any value asks for log-probs here."""
    echo: bool = False


# --------------------------------------------------------------------------- responses


class TokenLogprob(_Wire):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ChoiceLogprobs(_Wire):
    content: list[TokenLogprob] | None = None


class ChatChoice(_Wire):
    index: int = 0
    message: WireMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int] | None = None
    prompt_token_ids: list[int] | None = None
    """Some servers put the prompt ids on the choice instead of the top level."""


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletionResponse(_Wire):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[ChatChoice] = Field(min_length=1)
    usage: Usage | None = None
    prompt_token_ids: list[int] | None = None


class CompletionLogprobs(_Wire):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] | None = None
    text_offset: list[int] | None = None


class CompletionChoice(_Wire):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None
    token_ids: list[int] | None = None
    prompt_token_ids: list[int] | None = None


class CompletionResponse(_Wire):
    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = Field(min_length=1)
    usage: Usage | None = None


class ErrorBody(_Wire):
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None


class ErrorResponse(_Wire):
    error: ErrorBody


def token_id_of(token: str) -> int | None:
    """The id in a ``"token_id:<id>"`` token string, else None."""
    if token.startswith(TOKEN_ID_PREFIX):
        try:
            return int(token[len(TOKEN_ID_PREFIX) :])
        except ValueError:
            return None
    return None
