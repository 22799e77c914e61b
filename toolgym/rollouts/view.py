"""Render stored episodes in the terminal: ``toolgym view FILE``.

Each episode shows its header (env, task, seed, stop reason, reward, failure), then its
messages in order with tool calls and their arguments, error observations with their kind,
injected faults per turn and, when scores are given, the rubric's per-criterion breakdown.

>>> from toolgym.rollouts.view import EpisodeFilter
>>> EpisodeFilter(stop_reason="answered", min_reward=0.5).describe()
'stop_reason=answered, reward>=0.5'
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from toolgym.rollouts.episode import Episode

_ROLE_STYLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "yellow"}


class EpisodeFilter(BaseModel):
    """Which episodes to show; every set field must match."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    """Substring of the env id."""
    stop_reason: str | None = None
    failed: bool | None = None
    """True: only episodes with an infrastructure failure; False: only scorable ones."""
    min_reward: float | None = None
    max_reward: float | None = None
    errors: bool | None = None
    """True: only episodes with at least one error observation."""

    def matches(self, ep: Episode, reward: float) -> bool:
        return (
            (self.env is None or self.env in ep.env_id)
            and (self.stop_reason is None or ep.stop_reason.value == self.stop_reason)
            and (self.failed is None or (ep.failure is not None) == self.failed)
            and (self.min_reward is None or reward >= self.min_reward)
            and (self.max_reward is None or reward <= self.max_reward)
            and (self.errors is None or bool(ep.error_counts()) == self.errors)
        )

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.model_dump(exclude_none=True).items() if k not in ("min_reward", "max_reward")]
        if self.min_reward is not None:
            parts.append(f"reward>={self.min_reward}")
        if self.max_reward is not None:
            parts.append(f"reward<={self.max_reward}")
        return ", ".join(parts) or "all"


class Page(BaseModel):
    """One page of the filtered episodes."""

    indices: list[int] = Field(default_factory=list)
    """Positions in the file of the episodes on this page."""
    matched: int = 0
    page: int = 1
    pages: int = 1


def select(episodes: Sequence[Episode], rewards: Sequence[float], flt: EpisodeFilter, page: int, page_size: int) -> Page:
    """The episodes on ``page`` (1-based) of those matching ``flt``."""
    hits = [i for i, ep in enumerate(episodes) if flt.matches(ep, rewards[i])]
    pages = max(1, math.ceil(len(hits) / page_size))
    page = min(max(page, 1), pages)
    return Page(indices=hits[(page - 1) * page_size : page * page_size], matched=len(hits), page=page, pages=pages)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more chars]"


def _args(arguments: dict[str, Any], limit: int) -> str:
    return _clip(json.dumps(arguments, ensure_ascii=False, default=str), limit)


def render_episode(ep: Episode, index: int, *, score: Any = None, width: int = 2000) -> Panel:
    """A panel with one episode's header, conversation, errors, faults and scores."""
    head = Text()
    head.append(f"#{index} ", style="bold")
    head.append(f"{ep.env_id}  task={ep.task.id}  seed={ep.seed}  ")
    head.append(f"stop={ep.stop_reason.value}  ", style="bold red" if ep.stop_reason.is_failure else "bold")
    head.append(f"reward={ep.reward:.3f}  turns={len(ep.turns)}")
    if ep.group:
        head.append(f"  group={ep.group}")
    parts: list[Any] = [head]
    if ep.failure is not None:
        parts.append(Text(f"failure [{ep.failure.boundary}/{ep.failure.kind}] {ep.failure.message}", style="bold red"))
    for msg in ep.messages:
        parts.append(_message(msg, width))
    for t, turn in enumerate(ep.turns):
        for fault in turn.faults:
            parts.append(Text(f"fault in turn {t}: {_args(fault, width)}", style="magenta"))
    counts = ep.error_counts()
    if counts:
        parts.append(Text("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), style="red"))
    if score is not None:
        parts.append(_score_table(score))
    return Panel(Group(*parts), expand=True)


def _message(msg: Any, width: int) -> Text:
    text = Text()
    text.append(f"{msg.role:>9} │ ", style=_ROLE_STYLE.get(msg.role, ""))
    if msg.role == "tool":
        label = f"{msg.name}#{msg.tool_call_id}"
        text.append(f"[{label}{' ERROR ' + msg.error if msg.error else ''}] ", style="red" if msg.error else "yellow")
    text.append(_clip(msg.content, width))
    for call in getattr(msg, "tool_calls", []):
        text.append(f"\n{'':>9} │ → {call.name}({_args(call.arguments, width)})  #{call.id}", style="bold green")
    return text


def _score_table(score: Any) -> Table:
    """Per-criterion breakdown of a ``toolgym.rubrics.Score``."""
    if score.unscorable is not None:
        title = f"{score.rubric}: unscorable ({score.unscorable.kind}: {score.unscorable.message})"
    else:
        title = f"{score.rubric}: total {score.total:.3f}" + (f" (gated by {score.gated_by})" if score.gated_by else "")
    table = Table(title=title, show_edge=False, title_justify="left")
    for col in ("criterion", "kind", "value", "weight", "rationale"):
        table.add_column(col)
    for c in score.criteria:
        value = "skipped" if c.skipped else "n/a" if not c.applicable else "—" if c.value is None else f"{c.value:.3f}"
        table.add_row(c.id, c.kind, value, f"{c.weight:g}", _clip(c.rationale, 120))
    for p in score.penalties:
        table.add_row(p.id, "penalty", f"-{p.amount:.3f}", "", _clip(p.detail, 120))
    return table


def show(console: Console, episodes: Sequence[Episode], page: Page, flt: EpisodeFilter, scores: Sequence[Any] | None) -> None:
    """Print one page of episodes and a footer saying where the reader is."""
    for i in page.indices:
        console.print(render_episode(episodes[i], i, score=scores[i] if scores else None))
    console.print(
        f"[bold]{page.matched}[/] of {len(episodes)} episodes match ({flt.describe()}); page {page.page}/{page.pages}"
    )
