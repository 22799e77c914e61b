"""Qwen3-Coder: XML calls with one ``<parameter=…>`` element per argument, values as bare text.

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Oslo
    </parameter>
    </function>
    </tool_call>

Values are typed from the tool's JSON schema as in GLM-4.5 (strings as written, the rest
decoded; Python's ``True``/``None`` accepted, as the genuine template writes them). One
newline after ``<parameter=KEY>`` and one before ``</parameter>`` belong to the syntax.
A value holding ``</parameter>`` or a key holding ``>`` cannot be written in this syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import ParsedTurn, ParseError, clip, make_call, raw_text, snippet, tools_json_lines
from toolgym.envs.formats.tagged import scan_tagged_calls
from toolgym.envs.formats.turn import TextFormat, without_markers
from toolgym.envs.formats.values import param_types, text_value, typed_value
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
FUNC, FUNC_END, PARAM, PARAM_END = "<function=", "</function>", "<parameter=", "</parameter>"
MARKERS = (OPEN, CLOSE, FUNC, FUNC_END, PARAM, PARAM_END)


class Qwen3CoderFormat(TextFormat):
    """``<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>``, several per turn."""

    name = "qwen3_coder"
    syntax = f"{OPEN}\\n{FUNC}NAME>\\n{PARAM}KEY>\\nVALUE\\n{PARAM_END}\\n{FUNC_END}\\n{CLOSE}"
    markers = MARKERS
    typed_values = True
    stops = ("<|im_end|>",)

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        return scan_tagged_calls(text, id_prefix, tools, open_tag=OPEN, triggers=(OPEN, CLOSE, FUNC), markers=MARKERS,
                                 unclosed_end=FUNC_END + CLOSE, syntax=self.syntax, read_call=self._read_call)

    def _read_call(self, text: str, pos: int, call_id: str, tools: Sequence[ToolSpec] | None, turn: ParsedTurn) -> int:
        """Read one call whose body starts at ``pos``; returns the index past ``</tool_call>`` (-1: unclosed)."""
        func = text.find(FUNC, pos)
        close = text.find(CLOSE, pos)
        if func < 0 or (0 <= close < func) or text[pos:func].strip():
            if close < 0:
                return -1
            turn.errors.append(ParseError(message=f"a call must start with {FUNC}NAME>", snippet=snippet(text[pos:close].strip())))
            return close + len(CLOSE)
        name_end = text.find(">", func)
        if name_end < 0:
            return -1
        name = text[func + len(FUNC) : name_end].strip()
        pairs: list[tuple[str, str]] = []
        pos = _skip_space(text, name_end + 1)
        while text.startswith(PARAM, pos):
            key_end = text.find(">", pos)
            val_end = text.find(PARAM_END, key_end) if key_end >= 0 else -1
            if val_end < 0:
                return -1 if text.find(CLOSE, pos) < 0 else self._fail(turn, name, "parameter never closed", text, pos)
            pairs.append((text[pos + len(PARAM) : key_end], _unframe(text[key_end + 1 : val_end])))
            pos = _skip_space(text, val_end + len(PARAM_END))
        if not text.startswith(FUNC_END, pos):
            return -1 if text.find(CLOSE, pos) < 0 else self._fail(turn, name, f"expected {PARAM}KEY> or {FUNC_END}", text, pos)
        pos = _skip_space(text, pos + len(FUNC_END))
        if not text.startswith(CLOSE, pos):
            return -1 if text.find(CLOSE, pos) < 0 else self._fail(turn, name, f"expected {CLOSE} after {FUNC_END}", text, pos)
        if not name or "<" in name:
            turn.errors.append(ParseError(message="the function name is missing", snippet=snippet(text[func:pos])))
            return pos + len(CLOSE)
        types = param_types(tools, name)
        arguments = {k.strip(): typed_value(v, (types or {}).get(k.strip()), types is not None and k.strip() in types) for k, v in pairs}
        turn.tool_calls.append(make_call(call_id, name, arguments))
        return pos + len(CLOSE)

    @staticmethod
    def _fail(turn: ParsedTurn, name: str, problem: str, text: str, pos: int) -> int:
        close = text.find(CLOSE, pos)
        turn.errors.append(ParseError(message=f"call to {clip(name)}: {problem}", snippet=snippet(text[pos:close].strip())))
        return close + len(CLOSE)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        blocks = [
            f"{OPEN}\n{FUNC}{c.name}>\n" + "".join(_param(k, v) for k, v in c.arguments.items()) + f"{FUNC_END}\n{CLOSE}" for c in calls
        ]
        # Unreadable arguments: their text where a parameter should be, which parse() rejects.
        blocks += [f"{OPEN}\n{FUNC}{_clean(name) or '?'}>\n{_clean(raw_text(raw)) or '?'}\n{FUNC_END}\n{CLOSE}" for name, raw in unreadable]
        return "\n".join(([content] if content else []) + blocks)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\nYou have access to the following functions:\n<tools>\n"
            f"{tools_json_lines(tools)}\n</tools>\n\n"
            f"To call one, write:\n{OPEN}\n{FUNC}example_function_name>\n{PARAM}example_parameter>\nvalue\n{PARAM_END}\n{FUNC_END}\n{CLOSE}"
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"<tool_response>\n{message.content}\n</tool_response>"


def _param(key: str, value: Any) -> str:
    text = text_value(value)
    if PARAM_END in text:
        text = text_value(text).replace("<", "\\u003c")  # not expressible raw: a JSON string instead
    return f"{PARAM}{_clean(key).replace('>', '')}>\n{text}\n{PARAM_END}\n"


def _unframe(value: str) -> str:
    """The value without the one newline on each side that the syntax adds."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _clean(text: str) -> str:
    return without_markers(text, MARKERS)  # until none is left: one pass can join a new marker
