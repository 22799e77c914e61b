"""What every tool-call format does: parse assistant text, render calls, tools and results."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from toolgym.envs.safejson import DEFAULT_LIMITS, depth_of
from toolgym.envs.safejson import loads as safe_loads
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec, trusted


class ParseError(BaseModel):
    """A stretch of assistant text that looked like a tool call but could not be read."""

    message: str
    """Explanation written for the model."""
    snippet: str = ""
    """The offending text (cut to 200 characters)."""


@dataclass(slots=True)
class ParsedTurn:
    """An assistant turn split into free text and tool calls.

    A plain dataclass rather than a pydantic model: it is built on every step and never
    crosses a process boundary on its own (the env turns it into an ``AssistantMessage``).
    """

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)
    reasoning: str | None = None
    """Text of the turn's reasoning blocks (``<think>``, harmony's analysis channel...), None
    when the turn had none; never part of ``content``."""


class ToolCallFormat(Protocol):
    """How tool calls, tool specs and tool results look as text for one model family."""

    name: str

    def parse(self, text: str, id_prefix: str = "call_", tools: Sequence[ToolSpec] | None = None) -> ParsedTurn:
        """Split text into reasoning, content and calls; never raises, malformed calls become errors.

        ``tools`` (the specs offered) lets formats that write argument values as bare text
        (GLM, Qwen3-Coder) type each value from the tool's JSON schema.
        """
        ...

    def render_turn(
        self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]] = (), reasoning: str | None = None
    ) -> str:
        """Assistant text that ``parse`` reads back as ``content``, ``calls`` and ``reasoning``.

        ``unreadable`` holds (name, raw arguments) of structured calls whose arguments could
        not be read (say, from an endpoint); they are written so that ``parse`` reports each
        as a parse error, in every format.
        """
        ...

    def render_tools(self, tools: list[ToolSpec]) -> str:
        """The system-prompt section that teaches the model the tools and the call syntax."""
        ...

    def render_result(self, message: ToolMessage) -> str:
        """How one tool result appears in the prompt."""
        ...


loads = safe_loads
"""Model JSON, read within ``safejson.DEFAULT_LIMITS``; a violation is a ``json.JSONDecodeError``
(the safe reader itself, not a wrapper: every parsed call goes through it)."""


def make_call(call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
    """A ``ToolCall`` from values the parser has already checked (id and name are str,
    arguments a dict), built without re-validation."""
    return trusted(ToolCall, {"id": call_id, "name": name, "arguments": arguments})


def snippet(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def clip(text: str, limit: int = 80) -> str:
    """``repr`` of a name or value the model sent, cut so messages stay small."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_arguments(raw: Any) -> dict[str, Any] | str:
    """Arguments as a dict, accepting a JSON object or a string holding one; else a message."""
    if isinstance(raw, str):
        try:
            raw = loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
        if raw is None:  # written-out null: not an object (a missing or null field still means {})
            return "arguments must be a JSON object, got null"
    elif raw is None:
        return {}
    if not isinstance(raw, dict):
        return f"arguments must be a JSON object, got {type(raw).__name__}"
    return raw


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# Reasoning tags are read anywhere in a turn (see ``reasoning.py``), so JSON must not spell them.
_ALWAYS_ESCAPED = ("<think>", "</think>", "[THINK]", "[/THINK]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _escape_brackets(match: re.Match[str]) -> str:
    return match.group().replace("<", "\\u003c").replace("[", "\\u005b")


def dumps_inside(value: Any, markers: tuple[str, ...]) -> str:
    """JSON for a value that sits between format markers.

    A string that contains a marker (say ``</tool_call>`` or ``[TOOL_CALLS]``) or a reasoning tag
    would end the call early, so then every ``<`` and ``[`` inside JSON strings is written as its
    escape (``\\u003c``, ``\\u005b``), which parses back to the same text.
    """
    text = dumps(value)
    if any(m in text for m in markers) or any(t in text for t in _ALWAYS_ESCAPED):
        text = _JSON_STRING.sub(_escape_brackets, text)
    return text


def tools_json_lines(tools: list[ToolSpec]) -> str:
    return "\n".join(dumps(t.model_dump()) for t in tools)


def raw_text(raw: Any) -> str:
    """Unreadable arguments as text for ``render_turn``'s ``unreadable``: strings verbatim."""
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(raw)[:2000]


def screen_structured(turn: ParsedTurn) -> ParsedTurn:
    """Hold calls handed over as objects (not text) to the limits text parsing enforces.

    A call whose arguments are not a JSON object, or nest deeper than the JSON limit, becomes
    a parse error, exactly as the same call written as text would.
    """
    limit = DEFAULT_LIMITS.max_depth
    bad = [c for c in turn.tool_calls if not isinstance(c.arguments, dict) or depth_of(c.arguments, limit) > limit]
    if not bad:
        return turn
    errors = list(turn.errors)
    for call in bad:
        what = "nest deeper than {limit} levels" if isinstance(call.arguments, dict) else f"are a {type(call.arguments).__name__}, not an object"
        errors.append(ParseError(message=f"call to {clip(str(call.name))}: arguments {what.format(limit=limit)}", snippet=""))
    return ParsedTurn(content=turn.content, tool_calls=[c for c in turn.tool_calls if c not in bad], errors=errors, reasoning=turn.reasoning)
