"""The scanning loop shared by the XML-ish formats (GLM-4.5, Qwen3-Coder): calls between tags, text around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from toolgym.envs.formats.base import ParsedTurn, ParseError, snippet
from toolgym.envs.types import ToolSpec

ReadCall = Callable[[str, int, str, Sequence[ToolSpec] | None, ParsedTurn], int]
"""Reads one call starting at an index into the turn; returns the index past its close, -1 when unclosed."""


def scan_tagged_calls(
    text: str, id_prefix: str, tools: Sequence[ToolSpec] | None, *, open_tag: str, triggers: Sequence[str],
    markers: Sequence[str], unclosed_end: str, syntax: str, read_call: ReadCall,
) -> ParsedTurn:
    """Split ``text`` into the calls opened by ``open_tag`` and the content around them.

    A call that never closes, and call markers left outside any call, are parse errors that name
    the syntax; the markers are removed from the content, so no half call reaches the final
    answer. Text holding none of ``triggers`` is all content.
    """
    if not any(t in text for t in triggers):
        return ParsedTurn(content=text.strip())
    turn = ParsedTurn()
    outside: list[str] = []
    pos = 0
    while (start := text.find(open_tag, pos)) >= 0:
        outside.append(text[pos:start])
        end = read_call(text, start + len(open_tag), f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}", tools, turn)
        if end < 0:
            turn.errors.append(ParseError(message=f"tool call never closed: end it with {unclosed_end}", snippet=snippet(text[start:])))
            pos = len(text)
            break
        pos = end
    outside.append(text[pos:])
    content = "".join(outside)
    if any(m in content for m in markers):
        turn.errors.append(ParseError(message=f"call markers outside a call: each call is {syntax}", snippet=snippet(content.strip())))
        for marker in markers:
            content = content.replace(marker, "")
    turn.content = content.strip()
    return turn
