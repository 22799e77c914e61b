"""Kimi K2 style: calls inside a section of special tokens, ids of the form ``functions.NAME:IDX``.

    <|tool_calls_section_begin|><|tool_call_begin|>functions.convert:0<|tool_call_argument_begin|>
    {"value": 3}<|tool_call_end|><|tool_calls_section_end|>
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
from toolgym.envs.formats.reasoning import KIMI_VL_THINK, THINK
from toolgym.envs.formats.turn import TextFormat
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

SECTION_BEGIN, SECTION_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL_BEGIN, ARG_BEGIN, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
MARKERS = (SECTION_BEGIN, SECTION_END, CALL_BEGIN, ARG_BEGIN, CALL_END)
# The markers' lengths, read on every parsed call (a len() call each costs more than the lookup).
_SECTION_BEGIN_LEN, _SECTION_END_LEN, _CALL_BEGIN_LEN, _ARG_BEGIN_LEN, _CALL_END_LEN = map(len, MARKERS)
_ID = re.compile(r"^\s*(?:functions\.)?([A-Za-z_][\w.\-]*?):(\d+)\s*$")


class KimiK2Format(TextFormat):
    """Kimi K2's tool-call section with ``functions.NAME:IDX`` call ids."""

    name = "kimi_k2"
    syntax = f"{SECTION_BEGIN}{CALL_BEGIN}functions.NAME:INDEX{ARG_BEGIN}{{...}}{CALL_END}{SECTION_END}"
    markers = MARKERS
    stops = ("<|im_end|>",)
    think_tags = (THINK, KIMI_VL_THINK)

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if "<|tool_call" not in text:  # the common prefix of every marker
            return ParsedTurn(content=text.strip())
        start = text.find(SECTION_BEGIN)
        end = text.find(SECTION_END, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            return ParsedTurn(
                content=_strip_markers(text).strip(),
                errors=[
                    ParseError(
                        message=f"tool calls must sit between {SECTION_BEGIN} and {SECTION_END}",
                        snippet=snippet(text.strip()),
                    )
                ],
            )
        content = text[:start] + text[end + _SECTION_END_LEN :]
        section = text[start + _SECTION_BEGIN_LEN : end]
        turn = ParsedTurn(content=_strip_markers(content).strip())
        pos = 0
        while (begin := section.find(CALL_BEGIN, pos)) >= 0:
            arg = section.find(ARG_BEGIN, begin)
            end = section.find(CALL_END, arg) if arg >= 0 else -1
            if end < 0:
                break
            _leftover(section[pos:begin], turn)
            self._read_call(section[begin + _CALL_BEGIN_LEN : arg], section[arg + _ARG_BEGIN_LEN : end], turn)
            pos = end + _CALL_END_LEN
        _leftover(section[pos:], turn)
        return turn

    @staticmethod
    def _read_call(raw_id: str, raw_args: str, turn: ParsedTurn) -> None:
        id_match = _ID.match(raw_id)
        if not id_match:
            turn.errors.append(
                ParseError(message="call id must look like functions.NAME:INDEX", snippet=snippet(raw_id.strip()))
            )
            return
        name = id_match.group(1)
        args = read_arguments(raw_args)
        if isinstance(args, str):
            turn.errors.append(ParseError(message=f"call to {clip(name)}: {args}", snippet=snippet(raw_args.strip())))
            return
        turn.tool_calls.append(make_call(raw_id.strip(), name, args))

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        if not calls and not unreadable:
            return content
        body = "".join(
            f"{CALL_BEGIN}{_call_id(c, i)}{ARG_BEGIN}{dumps_inside(c.arguments, MARKERS)}{CALL_END}" for i, c in enumerate(calls)
        )
        body += "".join(
            f"{CALL_BEGIN}functions.{_strip_markers(name)}:{len(calls) + i}{ARG_BEGIN}{_strip_markers(raw_text(raw)) or '?'}{CALL_END}"
            for i, (name, raw) in enumerate(unreadable)
        )
        return f"{content}{SECTION_BEGIN}{body}{SECTION_END}"

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\nAvailable functions:\n"
            f"{tools_json_lines(tools)}\n\n"
            f"Call functions inside {SECTION_BEGIN}...{SECTION_END}; each call is "
            f"{CALL_BEGIN}functions.NAME:INDEX{ARG_BEGIN}<json arguments>{CALL_END}."
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"## Return of {message.tool_call_id}\n{message.content}"


def _call_id(call: ToolCall, index: int) -> str:
    return call.id if _ID.match(call.id) and call.id.startswith("functions.") else f"functions.{call.name}:{index}"


def _strip_markers(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, "")
    return text


def _leftover(text: str, turn: ParsedTurn) -> None:
    if text.strip():
        turn.errors.append(
            ParseError(
                message=f"unreadable text inside the tool-call section; each call is "
                f"{CALL_BEGIN}functions.NAME:INDEX{ARG_BEGIN}{{...}}{CALL_END}",
                snippet=snippet(text.strip()),
            )
        )
