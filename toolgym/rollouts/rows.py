"""Token rows: an ``Episode`` as the exact token sequence the policy saw and sampled.

A row is the first prompt's ids, then for each turn its sampled ids (loss mask 1, behaviour
log-probs) and the environment's ids that follow (tool results, user replies, the next turn's
header; loss mask 0). Nothing the model generated is re-tokenized: the ids come straight from
each ``TurnRecord``.

Turns are joined only when they are **clean**: a turn's prompt starts with the previous
turn's prompt followed by its sampled ids. Token-level policies make that so by extending the
previous ids (``PolicyRequest.prefix_token_ids``). Anything else is handled by a stated,
counted rule, never merged silently:

* **fork**: a turn whose prompt does not extend the previous turn (the template was not
  prefix-stable, or an endpoint re-rendered the conversation) starts a new row at that turn;
* **no ids**: a turn without token ids or log-probs (or with lengths that disagree) cannot be
  trained on; the row ends before it, and the next turn with ids starts a new row.

``turn_continuity`` classifies the turns; the rollout loop stores the counts in
``Episode.metrics`` (``TOKEN_FORKS``, ``TOKEN_TURNS_WITHOUT_IDS``).

>>> from toolgym.envs.types import StopReason, Task
>>> from toolgym.rollouts.episode import Episode, TurnRecord
>>> t0 = TurnRecord(text="a", prompt_token_ids=[1, 2], token_ids=[3, 9], logprobs=[-0.5, -0.1])
>>> t1 = TurnRecord(text="b", prompt_token_ids=[1, 2, 3, 9, 4, 5], token_ids=[6, 9], logprobs=[-0.2, -0.3])
>>> ep = Episode(id="e", env_id="x", task=Task(id="t", instruction="i"), seed=0, turns=[t0, t1], stop_reason=StopReason.ANSWERED)
>>> row, = episode_to_rows(ep)
>>> row.input_ids, row.loss_mask
([1, 2, 3, 9, 4, 5, 6, 9], [0, 0, 1, 1, 0, 0, 1, 1])
>>> row.turn_spans
[(2, 4), (6, 8)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.rollouts.episode import Episode, TurnRecord

Continuity = Literal["first", "clean", "fork", "no_ids"]
"""How a turn's tokens relate to the previous turn's (see the module docstring)."""

TOKEN_FORKS = "token_forks"
"""Episode metric: turns that started a new row because their prompt did not extend the previous turn."""
TOKEN_TURNS_WITHOUT_IDS = "token_turns_without_ids"
"""Episode metric: turns with no usable token ids or log-probs (left out of every row)."""


class TokenRow(BaseModel):
    """One training sequence: prompt, then sampled turns interleaved with environment tokens."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str
    group: str | None = None
    """GRPO sibling group of the episode."""
    row_index: int = 0
    """0 for the episode's first row; 1, 2, ... for rows started at a fork."""
    input_ids: list[int]
    loss_mask: list[int]
    """1 exactly on sampled tokens, 0 on prompt and environment tokens."""
    behaviour_logprobs: list[float]
    """Log-prob the behaviour policy gave each sampled token (raw, temperature 1); 0.0 where the mask is 0."""
    prompt_len: int
    """Tokens before the first sampled token."""
    turn_spans: list[tuple[int, int]]
    """``[start, end)`` of each turn's sampled ids in ``input_ids``."""
    turn_indices: list[int]
    """Which ``Episode.turns`` the spans come from."""
    ends_episode: bool
    """The row holds the episode's last turn (its stop reason applies to this row)."""
    terminated: bool
    truncated: bool
    routed_experts: list[list[list[int]]] | None = None
    """Routing replay: aligned with ``input_ids``, per token the top-k experts of each MoE layer at
    the position that sampled it (``TurnRecord.routed_experts``); ``[]`` on tokens not sampled or
    sampled without a record. ``None`` when no turn of the row recorded routing."""
    reward: float | None = None
    """Left to the trainer (episode score, advantage...); rows carry no reward of their own."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def _usable(turn: TurnRecord) -> bool:
    ids, logprobs = turn.token_ids, turn.logprobs
    return bool(turn.prompt_token_ids) and ids is not None and len(ids) > 0 and logprobs is not None and len(logprobs) == len(ids)


def _extends(turn: TurnRecord, previous: TurnRecord) -> bool:
    before = [*(previous.prompt_token_ids or []), *(previous.token_ids or [])]
    prompt = turn.prompt_token_ids or []
    return len(prompt) >= len(before) and prompt[: len(before)] == before


def turn_continuity(turns: Sequence[TurnRecord]) -> list[Continuity]:
    """Classify each turn: ``first`` (opens the first row), ``clean``, ``fork`` or ``no_ids``."""
    out: list[Continuity] = []
    previous: TurnRecord | None = None
    for turn in turns:
        if not _usable(turn):
            out.append("no_ids")
            previous = None
            continue
        if previous is not None and _extends(turn, previous):
            out.append("clean")
        else:  # a new row: the first one, or a fork
            out.append("fork" if any(k != "no_ids" for k in out) else "first")
        previous = turn
    return out


def token_metrics(turns: Sequence[TurnRecord]) -> dict[str, float]:
    """The episode metrics ``TOKEN_FORKS`` and ``TOKEN_TURNS_WITHOUT_IDS`` for these turns."""
    kinds = turn_continuity(turns)
    return {TOKEN_FORKS: float(kinds.count("fork")), TOKEN_TURNS_WITHOUT_IDS: float(kinds.count("no_ids"))}


def next_prefix(turns: Sequence[TurnRecord]) -> tuple[list[int] | None, int]:
    """What the next request continues from: the last turn's prompt plus sampled ids, and the
    number of messages they cover. ``(None, 0)`` when that turn has no ids (a full render follows)."""
    if not turns:
        return None, 0
    last = turns[-1]
    if not last.prompt_token_ids or not last.token_ids:
        return None, 0
    return [*last.prompt_token_ids, *last.token_ids], last.observation_start


def episode_to_rows(episode: Episode) -> list[TokenRow]:
    """The episode's training rows: one, or one per fork (see the module docstring).

    Returns an empty list when no turn has usable token ids (e.g. a hosted API without ids).
    """
    builders: list[_Builder] = []
    current: _Builder | None = None
    for index, (turn, kind) in enumerate(zip(episode.turns, turn_continuity(episode.turns), strict=True)):
        if kind == "no_ids":
            current = None
            continue
        if kind != "clean" or current is None:
            current = _Builder(turn.prompt_token_ids or [])
            builders.append(current)
        current.add(turn, index)
    last = len(episode.turns) - 1
    return [b.row(episode, i, b.turns[-1] == last) for i, b in enumerate(builders)]


class _Builder:
    """Accumulates one row turn by turn."""

    def __init__(self, prompt: list[int]):
        self.ids = list(prompt)
        self.mask = [0] * len(prompt)
        self.logprobs = [0.0] * len(prompt)
        self.prompt_len = len(prompt)
        self.spans: list[tuple[int, int]] = []
        self.turns: list[int] = []
        self.routed: list[list[list[int]]] = [[] for _ in prompt]
        self.any_routed = False

    def add(self, turn: TurnRecord, index: int) -> None:
        prompt = turn.prompt_token_ids or []
        observation = prompt[len(self.ids) :]  # the environment's tokens since the last turn
        self.ids += observation
        self.mask += [0] * len(observation)
        self.logprobs += [0.0] * len(observation)
        self.routed += [[] for _ in observation]
        ids, routed = turn.token_ids or [], turn.routed_experts
        self.routed += routed if routed is not None and len(routed) == len(ids) else [[] for _ in ids]
        self.any_routed = self.any_routed or (routed is not None and len(routed) == len(ids))
        start = len(self.ids)
        self.ids += turn.token_ids or []
        self.mask += [1] * len(turn.token_ids or [])
        self.logprobs += [float(x) for x in turn.logprobs or []]
        self.spans.append((start, len(self.ids)))
        self.turns.append(index)

    def row(self, episode: Episode, row_index: int, ends: bool) -> TokenRow:
        return TokenRow(
            episode_id=episode.id, group=episode.group, row_index=row_index, input_ids=list(self.ids),
            loss_mask=list(self.mask), behaviour_logprobs=list(self.logprobs), prompt_len=self.prompt_len,
            turn_spans=list(self.spans), turn_indices=list(self.turns), ends_episode=ends,
            terminated=ends and episode.terminated, truncated=ends and episode.truncated,
            routed_experts=[list(r) for r in self.routed] if self.any_routed else None,
        )


def episodes_to_rows(episodes: Sequence[Episode]) -> list[TokenRow]:
    """``episode_to_rows`` over many episodes, in order."""
    return [row for episode in episodes for row in episode_to_rows(episode)]


def collate(rows: Sequence[TokenRow], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors of a batch of rows (imports torch when called).

    Returns:
        ``input_ids`` (B, T) long, padded with ``pad_id``; ``attention_mask`` (B, T) long;
        ``loss_mask`` (B, T) float32; ``behaviour_logprobs`` (B, T) float32, 0 off the mask;
        ``routed_experts`` (B, T, L, k) long, -1 where a token has no record, only when a row has one.
        Token ``t`` of a row is predicted from position ``t - 1``: a trainer compares
        ``log_softmax(logits[:, :-1]).gather(input_ids[:, 1:])`` with ``behaviour_logprobs[:, 1:]``.
    """
    import torch

    if not rows:
        raise ValueError("collate needs at least one row")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)  # (B, T)
    logprobs = torch.zeros((len(rows), width), dtype=torch.float32)  # (B, T)
    for b, r in enumerate(rows):
        n = len(r)
        ids[b, :n] = torch.tensor(r.input_ids, dtype=torch.long)
        attention[b, :n] = 1
        mask[b, :n] = torch.tensor(r.loss_mask, dtype=torch.float32)
        logprobs[b, :n] = torch.tensor(r.behaviour_logprobs, dtype=torch.float32)
    out = {"input_ids": ids, "attention_mask": attention, "loss_mask": mask, "behaviour_logprobs": logprobs}
    if any(r.routed_experts is not None for r in rows):
        out["routed_experts"] = collate_routing(rows, width)
    return out


def collate_routing(rows: Sequence[TokenRow], width: int) -> Any:
    """``(B, width, L, k)`` long tensor of the rows' ``routed_experts``, -1 where a token has none."""
    import torch

    shapes = {(len(e), len(e[0])) for r in rows for e in r.routed_experts or [] if e}
    if len(shapes) != 1:
        raise ValueError(f"routed_experts: every record must be (MoE layers, top_k) of one model, got shapes "
                         f"{sorted(shapes)}; rows from different models cannot share a batch")
    (layers, k), = shapes
    out = torch.full((len(rows), width, layers, k), -1, dtype=torch.long)  # (B, T, L, k)
    for b, r in enumerate(rows):
        records = r.routed_experts or []
        if records and len(records) != len(r.input_ids):
            raise ValueError(f"routed_experts of row {r.episode_id!r} has {len(records)} entries for "
                             f"{len(r.input_ids)} tokens; it must be aligned with input_ids")
        recorded = [t for t, entry in enumerate(records) if entry]
        if recorded:
            out[b, recorded] = torch.tensor([records[t] for t in recorded], dtype=torch.long)  # (n, L, k)
    return out
