"""GLM-4.5 / 4.6: XML-ish calls, one key/value pair per argument, values as bare text.

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Oslo</arg_value>
    <arg_key>days</arg_key>
    <arg_value>3</arg_value>
    </tool_call>

String values are written as they are, others as JSON, so ``parse`` types each value from
the tool's JSON schema (``tools``): string parameters keep the text, the rest are decoded.
A string value holding ``</arg_value>`` (or a key holding ``</arg_key>``) cannot be written
in this syntax; the renderer then writes a JSON string, which reads back as its JSON text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import ParsedTurn, ParseError, clip, make_call, raw_text, snippet, tools_json_lines
from toolgym.envs.formats.tagged import scan_tagged_calls
from toolgym.envs.formats.turn import TextFormat, without_markers
from toolgym.envs.formats.values import param_types, text_value, typed_value
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
KEY, KEY_END, VALUE, VALUE_END = "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"
MARKERS = (OPEN, CLOSE, KEY, KEY_END, VALUE, VALUE_END)
_NAME = re.compile(r'^[^\s<>{}\[\]"]+$')


class GLM45Format(TextFormat):
    """``<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>…</tool_call>``, several per turn."""

    name = "glm45"
    syntax = f"{OPEN}NAME\\n{KEY}KEY{KEY_END}\\n{VALUE}VALUE{VALUE_END}\\n{CLOSE}"
    markers = MARKERS
    typed_values = True
    stops = ("<|user|>", "<|observation|>", "<|endoftext|>")

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        return scan_tagged_calls(text, id_prefix, tools, open_tag=OPEN, triggers=(OPEN, CLOSE, KEY), markers=MARKERS,
                                 unclosed_end=CLOSE, syntax=self.syntax, read_call=self._read_call)

    def _read_call(self, text: str, pos: int, call_id: str, tools: Sequence[ToolSpec] | None, turn: ParsedTurn) -> int:
        """Read one call whose name starts at ``pos``; returns the index past its close (-1: unclosed)."""
        stop = min((i for i in (text.find(KEY, pos), text.find(CLOSE, pos)) if i >= 0), default=-1)
        if stop < 0:
            return -1
        name = text[pos:stop].strip()
        pairs: list[tuple[str, str]] = []
        problem = "" if _NAME.match(name) else "the function name must follow <tool_call> directly"
        pos = stop
        while text.startswith(KEY, pos):
            key_end = text.find(KEY_END, pos)
            val = text.find(VALUE, key_end) if key_end >= 0 else -1
            val_end = text.find(VALUE_END, val) if val >= 0 else -1
            if val_end < 0 or text[key_end + len(KEY_END) : val].strip():
                problem = problem or f"each argument is {KEY}KEY{KEY_END} then {VALUE}VALUE{VALUE_END}"
                break
            pairs.append((text[pos + len(KEY) : key_end], text[val + len(VALUE) : val_end]))
            pos = val_end + len(VALUE_END)
            pos += len(text[pos:]) - len(text[pos:].lstrip())
        close = text.find(CLOSE, pos)
        if close < 0:
            return -1
        if text[pos:close].strip():
            problem = problem or f"unreadable text in the call; each argument is {KEY}KEY{KEY_END}{VALUE}VALUE{VALUE_END}"
        if problem:
            turn.errors.append(ParseError(message=f"call to {clip(name)}: {problem}", snippet=snippet(text[stop:close].strip())))
            return close + len(CLOSE)
        types = param_types(tools, name)
        arguments: dict[str, Any] = {}
        for key, raw in pairs:
            key = key.strip()
            arguments[key] = typed_value(raw, (types or {}).get(key), types is not None and key in types)
        turn.tool_calls.append(make_call(call_id, name, arguments))
        return close + len(CLOSE)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        blocks = [OPEN + c.name + "".join(_pair(k, v) for k, v in c.arguments.items()) + f"\n{CLOSE}" for c in calls]
        # Unreadable arguments: no key/value pairs at all, just their text, which parse() rejects.
        blocks += [f"{OPEN}{_clean(name) or '?'}\n{_clean(raw_text(raw)) or '?'}\n{CLOSE}" for name, raw in unreadable]
        return "\n".join(([content] if content else []) + blocks)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\nYou may call one or more functions.\n<tools>\n"
            f"{tools_json_lines(tools)}\n</tools>\n\n"
            f"For each call write:\n{OPEN}{{function-name}}\n{KEY}{{arg-key}}{KEY_END}\n{VALUE}{{arg-value}}{VALUE_END}\n...\n{CLOSE}"
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"<tool_response>\n{message.content}\n</tool_response>"


def _pair(key: str, value: Any) -> str:
    text = text_value(value)
    if VALUE_END in text:
        text = text_value(text).replace("<", "\\u003c")  # not expressible raw: a JSON string instead
    return f"\n{KEY}{_clean(key)}{KEY_END}\n{VALUE}{text}{VALUE_END}"


def _clean(text: str) -> str:
    return without_markers(text, MARKERS)  # until none is left: one pass can join a new marker
