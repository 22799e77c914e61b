"""Hermes / Qwen style: each call is a JSON object between ``<tool_call>`` tags.

    Let me check.
    <tool_call>
    {"name": "convert", "arguments": {"value": 3, "from_unit": "mi", "to_unit": "km"}}
    </tool_call>
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
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_OPEN_LEN, _CLOSE_LEN = len(OPEN), len(CLOSE)


class HermesFormat(TextFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, several per turn allowed."""

    name = "hermes"
    syntax = '<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>'
    markers = (OPEN, CLOSE)
    stops = ("<|im_end|>",)

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if OPEN not in text and CLOSE not in text:
            return ParsedTurn(content=text.strip())
        calls: list[ToolCall] = []
        errors: list[ParseError] = []
        outside: list[str] = []
        pos = n = 0
        while (start := text.find(OPEN, pos)) >= 0 and (end := text.find(CLOSE, start)) >= 0:
            outside.append(text[pos:start])
            call = self._read_call(text[start + _OPEN_LEN : end], f"{id_prefix}{n}")
            if type(call) is ParseError:
                errors.append(call)
            else:
                calls.append(call)  # type: ignore[arg-type]  # _read_call returns a ToolCall or a ParseError
            n += 1
            pos = end + _CLOSE_LEN
        outside.append(text[pos:])
        content = "".join(outside)
        if OPEN in content or CLOSE in content:  # a tag without its partner is in some piece (rarely: joined)
            for piece in outside:
                if OPEN in piece or CLOSE in piece:
                    errors.append(
                        ParseError(
                            message=f"unbalanced tool-call tags: every {OPEN} needs a matching {CLOSE}",
                            snippet=snippet(piece.strip()),
                        )
                    )
        if errors:
            content = content.replace(OPEN, "").replace(CLOSE, "")
        return ParsedTurn(content=content.strip(), tool_calls=calls, errors=errors)

    @staticmethod
    def _read_call(body: str, call_id: str) -> ToolCall | ParseError:
        try:
            data = loads(body)
        except json.JSONDecodeError as exc:
            return ParseError(
                message=f"tool call is not valid JSON ({exc.msg} at position {exc.pos}); "
                'expected {"name": "...", "arguments": {...}}',
                snippet=snippet(body.strip()),
            )
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return ParseError(
                message='tool call must be a JSON object with a string "name" and an object "arguments"',
                snippet=snippet(body.strip()),
            )
        args = read_arguments(data["arguments"] if "arguments" in data else data.get("parameters"))
        if isinstance(args, str):
            return ParseError(message=f"call to {clip(data['name'])}: {args}", snippet=snippet(body.strip()))
        return make_call(call_id, data["name"], args)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        blocks = [f"{OPEN}\n{dumps_inside({'name': c.name, 'arguments': c.arguments}, (OPEN, CLOSE))}\n{CLOSE}" for c in calls]
        # Unreadable arguments travel as a JSON string: parse() fails to read them as an object
        # again, and no raw text can close the tag or smuggle in a second "arguments" key.
        blocks += [f"{OPEN}\n{dumps_inside({'name': name, 'arguments': raw_text(raw) or '?'}, (OPEN, CLOSE))}\n{CLOSE}" for name, raw in unreadable]
        return "\n".join(([content] if content else []) + blocks)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\nYou can call the functions described below.\n<tools>\n"
            f"{tools_json_lines(tools)}\n</tools>\n\n"
            "To call one, write a JSON object with the function name and its arguments between tags:\n"
            f'{OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n{CLOSE}\n'
            "Several calls in one turn are allowed. Answer without tags when you are done."
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"<tool_response>\n{message.content}\n</tool_response>"
