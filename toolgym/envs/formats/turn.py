"""The parse pipeline every format shares: reasoning out, the format's own calls, then a look
for calls written in some other known format.

A format subclasses ``TextFormat`` and writes ``parse_calls`` (its own syntax only); ``parse``
adds the rest, so every family handles reasoning, stray formats and stop markers alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from toolgym.envs.formats.base import ParsedTurn, ParseError, snippet
from toolgym.envs.formats.detect import format_seen
from toolgym.envs.formats.reasoning import THINK, join_reasoning, split_reasoning
from toolgym.envs.types import ToolCall, ToolSpec

# Every call marker and reasoning tag of every format holds one of these characters.
_MARK = re.compile(r"[<\[{◁]")
# Every reasoning tag holds one of these.
_THINK_HINT = re.compile(r"think|THINK|◁")


class TextFormat:
    """Base of the text formats: ``parse`` = reasoning split + ``parse_calls`` + foreign-format check."""

    name: str
    syntax: ClassVar[str]
    """One line showing a call, quoted in error messages."""
    markers: ClassVar[tuple[str, ...]] = ()
    """Fixed strings this format writes in calls (a foreign-format check skips them)."""
    think_tags: ClassVar[tuple[tuple[str, str], ...]] = (THINK,)
    """Reasoning block tags split off before calls are read."""
    stops: ClassVar[tuple[str, ...]] = ()
    """End-of-turn markers a decoder may leave at the end of the text; dropped."""
    typed_values: ClassVar[bool] = False
    """Argument values are bare text typed from the tool schemas: ``parse`` needs ``tools``."""
    _hints: ClassVar[re.Pattern[str]] = _THINK_HINT
    """Matches a reasoning-tag hint or one of ``stops`` (set per class): one search tells the
    common call turn, which has neither, from the rest."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hints = re.compile("|".join([_THINK_HINT.pattern, *map(re.escape, cls.stops)]))

    def parse(self, text: str, id_prefix: str = "call_", tools: Sequence[ToolSpec] | None = None) -> ParsedTurn:
        """Split ``text`` into reasoning, content and calls; never raises.

        Malformed calls, calls inside reasoning, calls in another known format and broken
        reasoning blocks all become ``errors`` (so such a turn is never a final answer).
        """
        if _MARK.search(text) is None:
            return ParsedTurn(content=text.strip())  # no marker of any format or reasoning tag can be here
        if self._hints.search(text) is not None:  # a reasoning tag or a stop marker may be here
            if self.stops:
                text = _strip_stops(text, self.stops)
            if _THINK_HINT.search(text) is not None:
                return self._with_reasoning(text, id_prefix, tools)
        turn = self.parse_calls(text, id_prefix, tools)
        if not turn.errors and not turn.content and turn.reasoning is None:
            return turn  # the common call turn: calls only, nothing else to look at
        return self._finish(text, turn, [], [], tools)

    def _with_reasoning(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        pieces: list[str] = []
        errors: list[ParseError] = []
        text = self._split_reasoning(text, pieces, errors)
        return self._finish(text, self.parse_calls(text, id_prefix, tools), pieces, errors, tools)

    def _finish(self, text: str, turn: ParsedTurn, pieces: list[str], errors: list[ParseError], tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        """Reasoning joined and checked for calls, then a look for calls in other formats."""
        if _THINK_HINT.search(turn.content) is not None:
            # content decoded from JSON (openai) may spell the tags with escapes
            turn.content = self._split_reasoning(turn.content, pieces, errors).strip()
        if turn.reasoning is not None:  # a format with its own reasoning channel (harmony)
            pieces.append(turn.reasoning)
        if pieces:
            turn.reasoning = join_reasoning(pieces)
            if turn.reasoning:
                errors += self._calls_in_reasoning(turn.reasoning, tools)
        errors += turn.errors
        # A call the own parser took no notice of must not pass as an answer: if a known format's
        # markers remain (in the content, or anywhere when the turn is already broken), name it.
        look_at = text if errors else turn.content
        seen = format_seen(look_at, self.name, self.markers, patterns=not errors) if look_at else None
        if seen is not None:
            errors.append(
                ParseError(
                    message=f"this turn holds a tool call in the {seen} format, but this environment reads "
                    f"{self.name} calls: {self.syntax}",
                    snippet=snippet(look_at.strip()),
                )
            )
        turn.errors = errors
        return turn

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        """Content and calls in this format's own syntax (reasoning already taken out)."""
        raise NotImplementedError

    def _split_reasoning(self, text: str, pieces: list[str], errors: list[ParseError]) -> str:
        """``text`` without its reasoning blocks, which go to ``pieces`` (problems to ``errors``)."""
        for tags in self.think_tags:
            if tags[0] in text or tags[1] in text:
                found, text, bad = split_reasoning(text, tags)
                pieces += found
                errors += bad
        return text

    def _calls_in_reasoning(self, reasoning: str, tools: Sequence[ToolSpec] | None) -> list[ParseError]:
        inner = self.parse_calls(reasoning, "r_", tools)
        if not inner.tool_calls and not inner.errors:
            return []
        return [
            ParseError(
                message="a tool call inside the reasoning block is not run: finish reasoning first, then write "
                f"the call after it ({self.syntax})",
                snippet=snippet(reasoning.strip()),
            )
        ]

    def render_reasoning(self, reasoning: str | None) -> str:
        """The reasoning block that starts a rendered turn ('' when there is none)."""
        if reasoning is None:
            return ""
        open_tag, close_tag = self.think_tags[0]
        return f"{open_tag}{reasoning}{close_tag}\n\n"

    def render_turn(
        self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]] = (), reasoning: str | None = None
    ) -> str:
        """Assistant text that ``parse`` reads back as ``content``, ``calls`` and ``reasoning``.

        The format's own call markers are dropped from ``content`` (text cannot hold them
        without starting a call).
        """
        return self.render_reasoning(reasoning) + self.render_calls(without_markers(content, self.markers), calls, unreadable)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        """The answer part of a turn: content and calls in this format."""
        raise NotImplementedError


def without_markers(text: str, markers: tuple[str, ...]) -> str:
    """``text`` with every marker removed (until none is left: removal may join a new one)."""
    while any(m in text for m in markers):
        for marker in markers:
            text = text.replace(marker, "")
    return text


def _strip_stops(text: str, stops: tuple[str, ...]) -> str:
    for stop in stops:
        if stop in text:
            break
    else:
        return text  # the common case: no stop marker at all, no copy made
    end = text.rstrip()
    while True:
        for stop in stops:
            if end.endswith(stop):
                end = end[: -len(stop)].rstrip()
                break
        else:
            return end if len(end) != len(text.rstrip()) else text
