"""gpt-oss harmony: a turn is a run of messages, each on a channel.

    <|channel|>analysis<|message|>Need the weather.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>

``analysis`` is reasoning; ``final`` is the answer; ``commentary`` addressed
``to=functions.NAME`` is a call (the recipient may also sit after the role), and commentary
with no recipient is a preamble shown to the user (content). The first message may start
without ``<|start|>assistant`` (the generation prompt wrote it). A message ends at ``<|end|>``,
``<|call|>``, ``<|return|>`` or the end of the text. Recipients other than ``functions.*``
(the built-in ``browser``/``python`` tools) are not offered and are reported.
"""

from __future__ import annotations

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
from toolgym.envs.formats.turn import TextFormat, without_markers
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec

START, CHANNEL, CONSTRAIN, MESSAGE = "<|start|>", "<|channel|>", "<|constrain|>", "<|message|>"
END, CALL, RETURN = "<|end|>", "<|call|>", "<|return|>"
MARKERS = (START, CHANNEL, CONSTRAIN, MESSAGE, END, CALL, RETURN)
_ENDS = (END, CALL, RETURN, START)


class HarmonyFormat(TextFormat):
    """gpt-oss messages: ``analysis`` reasoning, ``commentary to=functions.NAME`` calls, ``final`` answer."""

    name = "harmony"
    syntax = f"{START}assistant{CHANNEL}commentary to=functions.NAME {CONSTRAIN}json{MESSAGE}{{json arguments}}{CALL}"
    markers = MARKERS

    def parse_calls(self, text: str, id_prefix: str, tools: Sequence[ToolSpec] | None) -> ParsedTurn:
        if not any(m in text for m in MARKERS):
            return ParsedTurn(content=text.strip())
        turn = ParsedTurn()
        content: list[str] = []
        reasoning: list[str] = []
        pos = 0
        while pos < len(text):
            head_end = text.find(MESSAGE, pos)
            if head_end < 0:
                _stray(text[pos:], turn)
                break
            header = text[pos:head_end]
            body_end = min((i for i in (text.find(e, head_end + len(MESSAGE)) for e in _ENDS) if i >= 0), default=len(text))
            body = text[head_end + len(MESSAGE) : body_end]
            self._read_message(header, body, f"{id_prefix}{len(turn.tool_calls) + len(turn.errors)}", turn, content, reasoning)
            pos = body_end
            for end in (END, CALL, RETURN):
                if text.startswith(end, pos):
                    pos += len(end)
                    break
            pos += len(text[pos:]) - len(text[pos:].lstrip())
        turn.content = "\n".join(c.strip() for c in content if c.strip())
        turn.reasoning = "\n\n".join(r.strip() for r in reasoning) if reasoning else None
        return turn

    @staticmethod
    def _read_message(header: str, body: str, call_id: str, turn: ParsedTurn, content: list[str], reasoning: list[str]) -> None:
        role_part, has_channel, channel_part = header.strip().partition(CHANNEL)
        role_words = role_part.replace(START, " ").split()
        words = channel_part.replace(CONSTRAIN, " ").split()
        recipients = [w[3:] for w in role_words + words if w.startswith("to=")]
        if role_words[:1] not in ([], ["assistant"]) or not has_channel or not words:
            what = "a message needs a channel" if not (has_channel and words) else f"the model may only write assistant messages, not {clip(role_words[0])}"
            turn.errors.append(ParseError(message=f"{what}; a call is {HarmonyFormat.syntax}", snippet=snippet(header + MESSAGE + body)))
            return
        channel = words[0]
        if channel == "analysis" and not recipients:
            reasoning.append(body)
        elif channel in ("final", "commentary") and not recipients:
            content.append(body)
        elif channel == "commentary" and len(recipients) == 1 and recipients[0].startswith("functions."):
            name = recipients[0][len("functions.") :]
            args = read_arguments(body) if body.strip() else "the arguments are missing (a call with none sends {})"
            if not name:
                turn.errors.append(ParseError(message="the recipient must be functions.NAME", snippet=snippet(header)))
            elif isinstance(args, str):
                turn.errors.append(ParseError(message=f"call to {clip(name)}: {args}", snippet=snippet(body.strip())))
            else:
                turn.tool_calls.append(make_call(call_id, name, args))
        else:
            turn.errors.append(
                ParseError(
                    message=f"unreadable message header (channel {clip(channel)}, recipient {clip(' '.join(recipients) or 'none')}); "
                    f"calls go on the commentary channel to=functions.NAME: {HarmonyFormat.syntax}",
                    snippet=snippet(header),
                )
            )

    def render_turn(
        self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]] = (), reasoning: str | None = None
    ) -> str:
        messages: list[str] = []
        content = without_markers(content, MARKERS)
        if reasoning is not None:
            messages.append(f"{CHANNEL}analysis{MESSAGE}{reasoning}{END}")
        if content:
            # With calls the text is a preamble (the turn goes on); alone it is the final answer.
            channel = "commentary" if calls or unreadable else "final"
            messages.append(f"{CHANNEL}{channel}{MESSAGE}{content}{END if calls or unreadable else RETURN}")
        messages += [f"{CHANNEL}commentary to=functions.{c.name} {CONSTRAIN}json{MESSAGE}{dumps_inside(c.arguments, MARKERS)}{CALL}" for c in calls]
        messages += [
            f"{CHANNEL}commentary to=functions.{_name(name)} {CONSTRAIN}json{MESSAGE}{_clean(raw_text(raw)) or '?'}{CALL}"
            for name, raw in unreadable
        ]
        return f"{START}assistant".join(messages)

    def render_calls(self, content: str, calls: list[ToolCall], unreadable: Sequence[tuple[str, Any]]) -> str:
        return self.render_turn(content, calls, unreadable)

    def render_tools(self, tools: list[ToolSpec]) -> str:
        return (
            "# Tools\n\n## functions\n\n"
            f"{tools_json_lines(tools)}\n\n"
            f"Call a function on the commentary channel: {self.syntax}"
        )

    def render_result(self, message: ToolMessage) -> str:
        return f"{START}functions.{message.name} to=assistant{CHANNEL}commentary{MESSAGE}{message.content}{END}"


def _stray(text: str, turn: ParsedTurn) -> None:
    if text.strip():
        turn.errors.append(
            ParseError(message=f"text outside any message; each message is {CHANNEL}CHANNEL{MESSAGE}TEXT{END}", snippet=snippet(text.strip()))
        )


def _clean(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, "")
    return text


def _name(name: str) -> str:
    """A name that keeps the header readable: no markers, no spaces."""
    return "".join(_clean(name).split()) or "?"
