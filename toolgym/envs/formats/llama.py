"""Llama 3.1 / 3.2 / 3.3: a call is a bare JSON object, optionally after ``<|python_tag|>``.

    {"name": "get_weather", "parameters": {"city": "Oslo"}}
    <|python_tag|>{"name": "get_weather", "arguments": {"city": "Oslo"}}

Arguments may be under ``parameters`` (Meta's prompt) or ``arguments``; several calls are
separated by ``;`` (or commas, newlines, a JSON list). Text before ``<|python_tag|>`` is
content; after it only calls may follow. Without the tag, any JSON object that opens with
``"name"`` and holds only call keys is a call, the rest of the text content. Meta's built-in
tools (``brave_search.call(...)`` after the tag) are not function calls and are reported.
"""

from __future__ import annotations

import json
import re
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
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.formats.values import json_end
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

TAG = "<|python_tag|>"
_CALL_START = re.compile(r'\{\s*"name"\s*:')
_CALL_KEYS = frozenset({"name", "parameters", "arguments", "type"})
_SEPARATORS = " \t\r\n;,[]"


class Llama3JsonFormat(TextFormat):
    """Llama 3.x JSON calls ``{"name": ..., "parameters": {...}}``, bare or after ``<|python_tag|>``."""

    name = "llama3_json"
    syntax = '{"name": "function_name", "parameters": {...}} (several separated by ";")'
    markers = (TAG,)
    stops = ("<|eot_id|>", "<|eom_id|>")

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if TAG in text:
            head, _, tail = text.partition(TAG)
            turn = ParsedTurn(content=head.strip())
            rest = self._scan(tail.replace(TAG, ""), id_prefix, turn)
            if rest.strip(_SEPARATORS):
                turn.errors.append(
                    ParseError(message=f"after {TAG} only JSON calls may follow ({self.syntax}); built-in tools are not offered",
                               snippet=snippet(rest.strip()))
                )
            return turn
        if '"name"' not in text and not text.lstrip().startswith("{"):
            return ParsedTurn(content=text.strip())
        turn = ParsedTurn()
        turn.content = self._scan(text, id_prefix, turn).strip()
        if not turn.tool_calls and not turn.errors and turn.content.startswith("{"):
            self._opening_brace(turn)
        return turn

    def _opening_brace(self, turn: ParsedTurn) -> None:
        """A turn that opens with ``{`` is how every Llama call starts: if it is not JSON, it is
        a call cut off (or garbled) before its name was complete, not an answer."""
        end = json_end(turn.content, 0)
        try:
            loads(turn.content[:end] if end >= 0 else turn.content)
        except (json.JSONDecodeError, ValueError):
            turn.errors.append(ParseError(message=f"the turn opens like a call but is not valid JSON; a call is {self.syntax}",
                                          snippet=snippet(turn.content)))

    def _scan(self, text: str, id_prefix: str, turn: ParsedTurn) -> str:
        """Read every call object in ``text`` into ``turn``; returns the text outside them."""
        outside: list[str] = []
        pos = 0
        for match in _CALL_START.finditer(text):
            start = match.start()
            if start < pos:
                continue  # inside a call already read
            end = json_end(text, start)
            body = text[start:end] if end >= 0 else text[start:]
            try:
                data = loads(body)
            except (json.JSONDecodeError, ValueError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                outside.append(text[pos:start])
                turn.errors.append(
                    ParseError(message=f"tool call is not valid JSON ({msg}); expected {self.syntax}", snippet=snippet(body.strip()))
                )
                pos = end if end >= 0 else len(text)
                continue
            if not (isinstance(data, dict) and set(data) <= _CALL_KEYS and isinstance(data.get("name"), str)):
                continue  # JSON that merely has a "name" (say, a record in the answer): content
            outside.append(text[pos:start])
            args = read_arguments(data.get("parameters", data.get("arguments")))
            if isinstance(args, str):
                turn.errors.append(ParseError(message=f"call to {clip(data['name'])}: {args}", snippet=snippet(body.strip())))
            else:
                turn.tool_calls.append(make_call(f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}", data["name"], args))
            pos = end
        outside.append(text[pos:])
        if turn.tool_calls or turn.errors:  # separators between calls are not content
            outside = [piece for piece in outside if piece.strip(_SEPARATORS)]
        return "".join(outside)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        objects = [dumps_inside({"name": c.name, "parameters": c.arguments}, (TAG,)) for c in calls]
        # Unreadable arguments travel as a JSON string: parse() fails to read them as an object.
        objects += [dumps_inside({"name": name, "parameters": raw_text(raw) or "?"}, (TAG,)) for name, raw in unreadable]
        if not objects:
            return content
        return f"{content}{TAG}{'; '.join(objects)}" if content else "; ".join(objects)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "Given the following functions, please respond with a JSON for a function call with its proper arguments "
            "that best answers the given prompt.\n\n"
            'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
            "Do not use variables.\n\n"
            f"{tools_json_lines(tools)}"
        )

    def render_result(self, message: ToolMessage) -> str:
        return message.content
