"""OpenAI style: the turn is a JSON message object with a ``tool_calls`` list.

    {"content": "", "tool_calls": [{"id": "call_0", "type": "function",
      "function": {"name": "convert", "arguments": "{\"value\": 3}"}}]}

Plain text that is not such an object is a final answer. Arguments may be a JSON string
(as the OpenAI API sends them) or an object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import (
    ParsedTurn,
    ParseError,
    clip,
    dumps,
    dumps_inside,
    loads,
    make_call,
    raw_text,
    read_arguments,
    snippet,
    tools_json_lines,
)
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec


class OpenAIFormat(TextFormat):
    """A JSON message ``{"content": ..., "tool_calls": [...]}``, as in the Chat Completions API."""

    name = "openai"
    syntax = '{"content": "", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": ..., "arguments": "<json>"}}]}'

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        stripped = text.strip()
        if '"tool_calls"' not in stripped:
            return ParsedTurn(content=stripped)
        try:
            data = loads(stripped)
        except json.JSONDecodeError as exc:
            return ParsedTurn(
                errors=[
                    ParseError(
                        message=f"tool_calls message is not valid JSON ({exc.msg} at position {exc.pos})",
                        snippet=snippet(stripped),
                    )
                ]
            )
        if not isinstance(data, dict) or not isinstance(data.get("tool_calls"), list):
            return ParsedTurn(
                errors=[ParseError(message='expected a JSON object with a "tool_calls" list', snippet=snippet(stripped))]
            )
        content = data.get("content") or ""
        turn = ParsedTurn(content=content if isinstance(content, str) else dumps(content))
        for i, item in enumerate(data["tool_calls"]):
            call = self._read_call(item, f"{id_prefix}{i}")
            if isinstance(call, ParseError):
                turn.errors.append(call)
            else:
                turn.tool_calls.append(call)
        return turn

    @staticmethod
    def _read_call(item: Any, default_id: str) -> ToolCall | ParseError:
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return ParseError(
                message='each tool call needs {"type": "function", "function": {"name": ..., "arguments": ...}}',
                snippet=snippet(dumps(item)),
            )
        args = read_arguments(fn.get("arguments"))
        if isinstance(args, str):
            return ParseError(message=f"call to {clip(fn['name'])}: {args}", snippet=snippet(dumps(item)))
        call_id = item.get("id")
        return make_call(call_id if isinstance(call_id, str) and call_id else default_id, fn["name"], args)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        if not calls and not unreadable:
            return content
        items = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": dumps(c.arguments)}} for c in calls]
        # Unreadable arguments travel as the string they were: parse() fails to read them again.
        items += [
            {"id": f"call_{len(calls) + i}", "type": "function", "function": {"name": name, "arguments": raw_text(raw) or "?"}}
            for i, (name, raw) in enumerate(unreadable)
        ]
        return dumps_inside({"content": content, "tool_calls": items}, ())

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\nAvailable functions (OpenAI function-calling schema):\n"
            f"{tools_json_lines(tools)}\n\n"
            'To call functions, reply with only a JSON object {"content": "", "tool_calls": '
            '[{"id": "call_0", "type": "function", "function": {"name": ..., "arguments": "<json>"}}]}. '
            "Reply in plain text when you are done."
        )

    def render_result(self, message: ToolMessage) -> str:
        return dumps({"tool_call_id": message.tool_call_id, "content": message.content})
