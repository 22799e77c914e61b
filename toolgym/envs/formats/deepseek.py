"""DeepSeek-V3 / V3.1 / R1: calls inside a section of special tokens.

V3.1 (and V3.2's non-DSML form) writes the name, a separator and JSON arguments:

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Oslo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>

R1 and V3-0324 write a type, the name on the same line and the arguments in a fenced block:

    <｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Oslo"}
    ```<｜tool▁call▁end｜>

Both are read; the renderer writes the V3.1 form. The bars and the ``▁`` are the full-width
and block characters of DeepSeek's tokenizer, not ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import (
    ParsedTurn,
    ParseError,
    clip,
    dumps_inside,
    make_call,
    raw_text,
    read_arguments,
    snippet,
    tools_json_lines,
)
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

SECTION_BEGIN, SECTION_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, SEP, CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
MARKERS = (SECTION_BEGIN, SECTION_END, CALL_BEGIN, SEP, CALL_END)
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class DeepSeekFormat(TextFormat):
    """DeepSeek's tool-call section, one or many calls, V3.1 and R1 call forms."""

    name = "deepseek"
    syntax = f"{SECTION_BEGIN}{CALL_BEGIN}NAME{SEP}{{json arguments}}{CALL_END}{SECTION_END}"
    markers = MARKERS
    stops = ("<｜end▁of▁sentence｜>",)

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if "tool▁call" not in text and SEP not in text:  # the common part of every marker
            return ParsedTurn(content=text.strip())
        start = text.find(SECTION_BEGIN)
        end = text.find(SECTION_END, start) if start >= 0 else -1
        if start < 0 or end < 0:
            return ParsedTurn(
                content=_strip_markers(text).strip(),
                errors=[ParseError(message=f"tool calls must sit between {SECTION_BEGIN} and {SECTION_END}", snippet=snippet(text.strip()))],
            )
        turn = ParsedTurn(content=_strip_markers(text[:start] + text[end + len(SECTION_END) :]).strip())
        section = text[start + len(SECTION_BEGIN) : end]
        pos = 0
        while (begin := section.find(CALL_BEGIN, pos)) >= 0:
            close = section.find(CALL_END, begin)
            if close < 0:
                break
            _leftover(section[pos:begin], turn)
            self._read_call(section[begin + len(CALL_BEGIN) : close], f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}", turn)
            pos = close + len(CALL_END)
        _leftover(section[pos:], turn)
        return turn

    @staticmethod
    def _read_call(body: str, call_id: str, turn: ParsedTurn) -> None:
        head, sep, rest = body.partition(SEP)
        if not sep:
            turn.errors.append(ParseError(message=f"a call is NAME{SEP}{{json arguments}}", snippet=snippet(body.strip())))
            return
        name, raw_args = head.strip(), rest
        if name == "function" and not rest.lstrip().startswith("{"):  # R1: type, then name and a fenced block
            name, _, raw_args = rest.partition("\n")
            name = name.strip()
            fenced = _FENCE.match(raw_args)
            raw_args = fenced.group(1) if fenced else raw_args
        if not name or any(c in name for c in "\n{<"):
            turn.errors.append(ParseError(message=f"the function name is missing before {SEP}", snippet=snippet(body.strip())))
            return
        args = read_arguments(raw_args)
        if isinstance(args, str):
            turn.errors.append(ParseError(message=f"call to {clip(name)}: {args}", snippet=snippet(raw_args.strip())))
            return
        turn.tool_calls.append(make_call(call_id, name, args))

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        if not calls and not unreadable:
            return content
        body = "".join(f"{CALL_BEGIN}{c.name}{SEP}{dumps_inside(c.arguments, MARKERS)}{CALL_END}" for c in calls)
        body += "".join(
            f"{CALL_BEGIN}{_strip_markers(name) or '?'}{SEP}{_strip_markers(raw_text(raw)) or '?'}{CALL_END}" for name, raw in unreadable
        )
        return f"{content}{SECTION_BEGIN}{body}{SECTION_END}"

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "## Tools\n\nYou have access to the following tools:\n"
            f"{tools_json_lines(tools)}\n\n"
            f"To call tools, write {SECTION_BEGIN}{CALL_BEGIN}tool_name{SEP}{{json arguments}}{CALL_END}...{SECTION_END}"
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"<｜tool▁output▁begin｜>{message.content}<｜tool▁output▁end｜>"


def _strip_markers(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, "")
    return text


def _leftover(text: str, turn: ParsedTurn) -> None:
    if text.strip():
        turn.errors.append(
            ParseError(message=f"unreadable text inside the tool-call section; each call is {CALL_BEGIN}NAME{SEP}{{...}}{CALL_END}",
                       snippet=snippet(text.strip()))
        )
