"""Mistral: calls after ``[TOOL_CALLS]``, in one of two generations of the syntax.

Older models (Mistral-7B-v0.3, Nemo, Small 3.1) write a JSON list, ids optional:

    [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "a1b2c3d4e"}]

Newer ones (Small 3.2, Magistral, Devstral) write the name, then ``[ARGS]`` and a JSON
object, one ``[TOOL_CALLS]`` per call, with an optional ``[CALL_ID]`` before ``[ARGS]``:

    [TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}

Both are read; the renderer writes the newer form. Text before the first ``[TOOL_CALLS]`` is
content. Magistral reasons in ``[THINK]…[/THINK]`` (``<think>`` is read too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import (
    ParsedTurn,
    ParseError,
    clip,
    dumps_inside,
    loads,
    make_call,
    raw_text,
    read_arguments,
    snippet,
    tools_json_lines,
)
from toolgym.envs.formats.reasoning import MISTRAL_THINK, THINK
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.formats.values import json_end
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

CALLS, ARGS, CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"
MARKERS = (CALLS, ARGS, CALL_ID)


class MistralFormat(TextFormat):
    """``[TOOL_CALLS]NAME[ARGS]{...}`` (newer) and ``[TOOL_CALLS][{...}]`` (older), ids optional."""

    name = "mistral"
    syntax = f"{CALLS}function_name{ARGS}{{json arguments}} (one {CALLS} per call)"
    markers = MARKERS
    think_tags = (MISTRAL_THINK, THINK)
    stops = ("</s>",)

    def render_reasoning(self, reasoning: str | None) -> str:
        return "" if reasoning is None else f"{MISTRAL_THINK[0]}{reasoning}{MISTRAL_THINK[1]}"

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if CALLS not in text:
            if ARGS in text or CALL_ID in text:
                return ParsedTurn(
                    content=_strip_markers(text).strip(),
                    errors=[ParseError(message=f"{ARGS} outside a call: each call starts with {CALLS}", snippet=snippet(text.strip()))],
                )
            return ParsedTurn(content=text.strip())
        head, *segments = text.split(CALLS)
        turn = ParsedTurn(content=_strip_markers(head).strip())
        for segment in segments:
            if segment.lstrip().startswith("["):
                self._read_list(segment, id_prefix, turn)
            else:  # an empty segment is a call cut off right after its marker: _read_named reports it
                self._read_named(segment, f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}", turn)
        return turn

    @staticmethod
    def _read_list(segment: str, id_prefix: str, turn: ParsedTurn) -> None:
        start = segment.find("[")
        end = json_end(segment, start)
        body = segment[start:end] if end >= 0 else segment[start:]
        try:
            items = loads(body)
        except (json.JSONDecodeError, ValueError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            turn.errors.append(ParseError(message=f"tool-call list is not valid JSON ({msg})", snippet=snippet(body.strip())))
            return
        if not isinstance(items, list):
            items = [items]
        for item in items:
            call_id = f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                turn.errors.append(ParseError(message='each call in the list is {"name": ..., "arguments": {...}}', snippet=snippet(json.dumps(item)[:200])))
                continue
            args = read_arguments(item.get("arguments", item.get("parameters")))
            if isinstance(args, str):
                turn.errors.append(ParseError(message=f"call to {clip(item['name'])}: {args}", snippet=snippet(body.strip())))
                continue
            given = item.get("id")
            turn.tool_calls.append(make_call(given if isinstance(given, str) and given else call_id, item["name"], args))
        _trailing(segment[end:] if end >= 0 else "", turn)

    @staticmethod
    def _read_named(segment: str, call_id: str, turn: ParsedTurn) -> None:
        head, has_args, rest = segment.partition(ARGS)
        name, _, given_id = head.partition(CALL_ID)
        name, given_id = name.strip(), given_id.strip()
        if not has_args or not name or any(c in name for c in "{[\n"):
            turn.errors.append(ParseError(message=f"a call is {MistralFormat.syntax}", snippet=snippet(segment.strip())))
            return
        start = len(rest) - len(rest.lstrip())
        end = json_end(rest, start) if rest[start : start + 1] == "{" else -1
        raw = rest[start:end] if end >= 0 else rest
        args = read_arguments(raw) if raw.strip() else "the arguments are missing (a call with none sends {})"
        if isinstance(args, str):
            turn.errors.append(ParseError(message=f"call to {clip(name)}: {args}", snippet=snippet(raw.strip())))
            return
        turn.tool_calls.append(make_call(given_id or call_id, name, args))
        _trailing(rest[end:] if end >= 0 else "", turn)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        parts = [f"{CALLS}{c.name}{ARGS}{dumps_inside(c.arguments, MARKERS)}" for c in calls]
        parts += [f"{CALLS}{_name(name)}{ARGS}{_strip_markers(raw_text(raw)) or '?'}" for name, raw in unreadable]
        return content + "".join(parts)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return f"[AVAILABLE_TOOLS][{', '.join(tools_json_lines(tools).splitlines())}][/AVAILABLE_TOOLS]\nTo call a tool write {self.syntax}."

    def render_result(self, message: ToolMessage) -> str:
        return f"[TOOL_RESULTS]{message.content}[/TOOL_RESULTS]"


def _trailing(text: str, turn: ParsedTurn) -> None:
    if text.strip():
        turn.errors.append(ParseError(message=f"text after a call; write the answer before {CALLS}", snippet=snippet(text.strip())))


def _strip_markers(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, "")
    return text


def _name(name: str) -> str:
    return "".join(_strip_markers(name).replace("{", "").replace("[", "").split()) or "?"
