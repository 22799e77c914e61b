"""Typed data that crosses every boundary: messages, tool specs, tool calls, results, tasks.

Everything here is a pydantic model so that a rollout can be written to disk, shipped to a
Ray actor or handed to a trainer and come back unchanged. Tool specs use the OpenAI
function-calling form (``{"type": "function", "function": {...}}``), which Hugging Face chat
templates and MCP also understand.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

JsonDict = dict[str, Any]
_M = TypeVar("_M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- tool specs


class FunctionSpec(_Model):
    """The ``function`` part of an OpenAI tool spec."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
    """Tool name the model calls."""
    description: str = ""
    """What the tool does, shown to the model."""
    parameters: JsonDict = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments object."""


class ToolSpec(_Model):
    """A tool as the model sees it, in OpenAI function-calling form."""

    type: Literal["function"] = "function"
    function: FunctionSpec

    @property
    def name(self) -> str:
        return self.function.name


# --------------------------------------------------------------------------- calls and results


class ToolCall(_Model):
    """One call the model asked for."""

    id: str
    """Call id, unique within an episode; tool results refer back to it."""
    name: str
    arguments: JsonDict = Field(default_factory=dict)


ToolErrorKind = Literal[
    "parse_error",  # the call text could not be read
    "unknown_tool",  # no tool of that name
    "invalid_arguments",  # missing, extra or mistyped arguments
    "tool_exception",  # the tool raised
    "policy_violation",  # the tool refused: the domain's policy forbids the action
    "timeout",  # the tool ran past its deadline
    "budget_exceeded",  # the episode's tool-call budget is spent
    "simulator_error",  # a tool simulator produced unusable output (infrastructure)
    "injected_fault",  # a fault-injection wrapper failed the call on purpose
    "rate_limited",  # a 429-style refusal
    "unserializable_output",  # the tool returned something that is not JSON
]


class ToolError(_Model):
    """Why a call produced no normal output. The message is written for the model."""

    kind: ToolErrorKind
    message: str


class ToolResult(_Model):
    """What one call produced: an output or a typed error, never both."""

    call_id: str
    name: str
    output: Any = None
    """JSON-serializable output of the tool (None when ``error`` is set)."""
    error: ToolError | None = None
    truncated: bool = False
    """The rendered output was longer than the limit and was cut, with a marker."""

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- messages


class SystemMessage(_Model):
    role: Literal["system"] = "system"
    content: str


class UserMessage(_Model):
    role: Literal["user"] = "user"
    content: str


class AssistantMessage(_Model):
    role: Literal["assistant"] = "assistant"
    content: str = ""
    """Text outside tool calls and reasoning blocks: a preamble, or the final answer."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    raw: str | None = None
    """The exact text the policy produced, when it produced text."""
    reasoning: str | None = None
    """The turn's reasoning (``<think>`` blocks, harmony's analysis channel...), split off by
    the tool-call format; None when the turn had none. Answer checks and critics do not see it."""


class ToolMessage(_Model):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str
    content: str
    """The output as the model reads it (JSON text or an error explanation)."""
    error: ToolErrorKind | None = None


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


# --------------------------------------------------------------------------- stop reasons


class StopReason(str, enum.Enum):
    """Why an episode ended. Terminal reasons, truncations and failures are kept apart."""

    ANSWERED = "answered"
    """The assistant gave a final answer (no tool calls): terminated."""
    USER_STOP = "user_stop"
    """The simulated user ended the conversation: terminated."""
    TRANSFER = "transfer"
    """The conversation was handed to a human: terminated."""
    MAX_TURNS = "max_turns"
    """Turn budget spent: truncated."""
    MAX_TOOL_CALLS = "max_tool_calls"
    """Tool-call budget spent: truncated."""
    CONTEXT_LIMIT = "context_limit"
    """The conversation no longer fits the policy's context: truncated."""
    POLICY_ERROR = "policy_error"
    """The policy (model, endpoint) failed: infrastructure, unscorable."""
    ENV_ERROR = "env_error"
    """The environment crashed: infrastructure, unscorable."""

    @property
    def terminated(self) -> bool:
        return self in _TERMINATED

    @property
    def truncated(self) -> bool:
        return self in _TRUNCATED

    @property
    def is_failure(self) -> bool:
        return self in (StopReason.POLICY_ERROR, StopReason.ENV_ERROR)


_TERMINATED = {StopReason.ANSWERED, StopReason.USER_STOP, StopReason.TRANSFER}
_TRUNCATED = {StopReason.MAX_TURNS, StopReason.MAX_TOOL_CALLS, StopReason.CONTEXT_LIMIT}


# --------------------------------------------------------------------------- tasks


class Limits(_Model):
    """Budgets of one episode."""

    max_turns: int = Field(default=16, ge=1)
    """Assistant turns before the episode is truncated."""
    max_tool_calls: int = Field(default=64, ge=0)
    """Tool calls before further calls are refused and the episode is truncated."""
    max_calls_per_turn: int = Field(default=8, ge=1)
    """Parallel calls accepted in one assistant turn; the rest get an error."""
    max_output_chars: int = Field(default=4000, ge=64)
    """Longer tool outputs are cut and marked."""
    tool_timeout_s: float = Field(default=10.0, gt=0)
    """Deadline of one tool call (a tool's own ``timeout_s`` overrides it). Sync tools are
    interrupted at it too (``toolgym.envs.deadline``)."""


class GoldAction(_Model):
    """One step of a reference solution."""

    name: str
    arguments: JsonDict = Field(default_factory=dict)


class Expected(_Model):
    """What a correct episode ends with."""

    state_digest: str | None = None
    """``state_digest()`` of the world after the gold actions."""
    outputs: list[str] = Field(default_factory=list)
    """Strings the final answer must contain."""
    answer: str | None = None
    """Reference final answer, when there is a single one."""


class Task(_Model):
    """One thing to do in an environment, with what counts as doing it."""

    id: str
    instruction: str
    """What the user asks for (the first user message)."""
    system_prompt: str | None = None
    """Overrides the environment's default system prompt."""
    initial_state: JsonDict = Field(default_factory=dict)
    """World state the environment starts from."""
    tools: list[str] | None = None
    """Subset of the environment's tools offered in this task (None: all)."""
    limits: Limits = Field(default_factory=Limits)
    gold_actions: list[GoldAction] = Field(default_factory=list)
    """A reference solution, one call per turn, in order."""
    gold_answer: str | None = None
    """The final message of the reference solution."""
    expected: Expected = Field(default_factory=Expected)
    metadata: JsonDict = Field(default_factory=dict)


# --------------------------------------------------------------------------- observations


class Observation(_Model):
    """What the environment shows the policy after ``reset`` or ``step``.

    After ``reset`` ``messages`` is the whole opening conversation; after ``step`` it holds
    only the messages added by that step (tool results, user replies).
    """

    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(default_factory=list)


# --------------------------------------------------------------------------- trusted construction


def trusted(cls: type[_M], data: dict[str, Any]) -> _M:
    """Build a model from a complete dict of values the library itself produced.

    One environment step builds several messages; skipping re-validation of values that are
    valid by construction keeps a step around a dozen microseconds. ``data`` must hold every
    field, in declaration order. Anything a user or a model hands in is still validated.
    ``tests/envs/test_trusted_guard.py`` fails, naming the pydantic version, if the result ever
    differs from the validated construction (a new instance slot after an upgrade, say).
    ``benchmarks/trusted_construction.py`` times the public alternatives: a UnitConv step is
    roughly 40% slower through ``model_construct`` and 20% slower through validation.

    Every instance of ``cls`` built here shares one ``model_fields_set`` (all fields): pydantic
    only ever adds a field name to it (on assignment), which it already holds, and copies it
    for ``model_copy``. One set fewer per message is a third of the objects the cyclic
    collector traverses per step in ``benchmarks/api_envs.py``, and pickles once per payload.
    """
    obj = cls.__new__(cls)
    _setattr(obj, "__dict__", data)
    try:
        fields_set = _ALL_FIELDS[cls]
    except KeyError:
        fields_set = _ALL_FIELDS[cls] = set(cls.model_fields)
    _setattr(obj, "__pydantic_fields_set__", fields_set)
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


# The low-level setattr pydantic's own __copy__ uses (no validation, no hooks), bound once.
_setattr = object.__setattr__
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}
"""Per model class, the one fields-set its ``trusted`` instances share."""
