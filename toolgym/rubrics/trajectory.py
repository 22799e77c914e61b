"""Reading an ``Episode`` the way checks and penalties need it: calls paired with results,
token counts, error counts. Pure functions over the episode record, no environment needed."""

from __future__ import annotations

from dataclasses import dataclass

from toolgym.envs.types import AssistantMessage, ToolCall, ToolMessage
from toolgym.rollouts.episode import Episode

MALFORMED_KINDS = ("parse_error", "unknown_tool", "invalid_arguments")
"""Error kinds that mean the model wrote a call that could not be run as written."""


@dataclass(frozen=True)
class CallRecord:
    """One tool call the model made and the message that answered it (None if none did)."""

    call: ToolCall
    result: ToolMessage | None

    @property
    def ok(self) -> bool:
        """The call ran and returned a normal output."""
        return self.result is not None and self.result.error is None


def call_records(episode: Episode) -> list[CallRecord]:
    """Every parsed tool call of the episode, in order, with its result message."""
    results = {m.tool_call_id: m for m in episode.messages if isinstance(m, ToolMessage)}
    return [
        CallRecord(call=call, result=results.get(call.id))
        for message in episode.messages
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls
    ]


def generated_tokens(episode: Episode) -> int | None:
    """Tokens the policy generated over all turns; None when a turn kept no token ids."""
    if not episode.turns or any(t.token_ids is None for t in episode.turns):
        return None
    return sum(len(t.token_ids or []) for t in episode.turns)


def attempted_calls(episode: Episode) -> int:
    """Calls the model tried to make: parsed calls plus unparseable call texts."""
    parsed = sum(t.tool_calls for t in episode.turns) if episode.turns else len(call_records(episode))
    return parsed + episode.error_counts().get("parse_error", 0)


def malformed_calls(episode: Episode) -> int:
    """Attempted calls that could not be run as written (see ``MALFORMED_KINDS``)."""
    counts = episode.error_counts()
    return sum(counts.get(kind, 0) for kind in MALFORMED_KINDS)
