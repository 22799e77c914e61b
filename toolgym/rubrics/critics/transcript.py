"""An episode as plain text for a judge: who said what, which tools ran, what they returned."""

from __future__ import annotations

import json

from toolgym.envs.types import AssistantMessage, SystemMessage, ToolMessage, UserMessage
from toolgym.rollouts.episode import Episode

CUT_MARKER = "\n[... {n} characters cut ...]\n"


def render_transcript(episode: Episode, max_chars: int = 12000, include_opening: bool = True) -> str:
    """The conversation after the system prompt, as ``[role] text`` blocks.

    Args:
        episode: The episode.
        max_chars: Longer transcripts keep their head and tail (the answer is at the end).
        include_opening: Include the user's first message (pairwise critics show it once).
    """
    blocks: list[str] = []
    opening_seen = False
    for m in episode.messages:
        if isinstance(m, SystemMessage):
            continue
        if isinstance(m, UserMessage):
            if not opening_seen:
                opening_seen = True
                if not include_opening:
                    continue
            blocks.append(f"[user] {m.content}")
        elif isinstance(m, AssistantMessage):
            calls = "".join(f"\n  call {c.name}({json.dumps(c.arguments, sort_keys=True)})" for c in m.tool_calls)
            blocks.append(f"[assistant] {m.content}{calls}")
        elif isinstance(m, ToolMessage):
            status = f" error={m.error}" if m.error else ""
            blocks.append(f"[tool {m.name or '?'}{status}] {m.content}")
    blocks.append(f"[end: {episode.stop_reason.value}]")
    return clip("\n".join(blocks), max_chars)


def clip(text: str, max_chars: int) -> str:
    """``text`` cut in the middle to at most about ``max_chars`` characters, with a marker."""
    if len(text) <= max_chars:
        return text
    head = max_chars // 3
    tail = max_chars - head
    return text[:head] + CUT_MARKER.format(n=len(text) - max_chars) + text[-tail:]
