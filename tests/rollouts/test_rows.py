"""Token rows from turn records: joins, masks, log-probs, forks and turns without ids (no model)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.types import StopReason, Task
from toolgym.rollouts.episode import Episode, TurnRecord
from toolgym.rollouts.rows import (
    TOKEN_FORKS,
    TOKEN_TURNS_WITHOUT_IDS,
    collate,
    episode_to_rows,
    episodes_to_rows,
    next_prefix,
    token_metrics,
    turn_continuity,
)

ids = st.lists(st.integers(0, 50), min_size=1, max_size=6)


def episode(turns: list[TurnRecord], stop: StopReason = StopReason.ANSWERED) -> Episode:
    return Episode(id="e/0", env_id="x", task=Task(id="t", instruction="i"), seed=0, turns=turns, stop_reason=stop, group="g")


@st.composite
def turn_plans(draw):
    """Turns as a token-level policy makes them, with drifts and id-less turns mixed in.

    Returns the turns and, per turn, what happened: "ok", "drift" (its prompt does not extend
    the previous turn) or "no_ids".
    """
    n = draw(st.integers(1, 6))
    turns: list[TurnRecord] = []
    kinds: list[str] = []
    carried = draw(ids)  # what the next prompt starts with
    joined = len(carried)  # how much of it is the previous turn's prompt and sampled ids
    for _ in range(n):
        kind = draw(st.sampled_from(["ok", "ok", "ok", "drift", "no_ids"]))
        prompt = list(carried)
        if kind == "drift":
            # The re-rendered prompt differs from what was sampled: one of those ids changes.
            at = draw(st.integers(0, joined - 1))
            prompt[at] = prompt[at] + 100
        sampled = draw(ids)
        logprobs = [-(i + 1) / 10 for i in range(len(sampled))]
        if kind == "no_ids":
            turns.append(TurnRecord(text="x", prompt_token_ids=None, token_ids=None, logprobs=None))
            carried = prompt + sampled  # a full re-render follows; its ids are new
        else:
            turns.append(TurnRecord(text="x", prompt_token_ids=prompt, token_ids=sampled, logprobs=logprobs))
            carried = prompt + sampled
        kinds.append(kind)
        joined = len(carried)
        carried = carried + draw(ids)  # the environment's tokens before the next turn
    return turns, kinds


@settings(max_examples=80, deadline=None)
@given(turn_plans())
def test_rows_hold_every_usable_turn_exactly_and_never_join_a_drift(plan):
    turns, kinds = plan
    ep = episode(turns)
    rows = episode_to_rows(ep)
    seen = [i for r in rows for i in r.turn_indices]
    assert seen == [i for i, k in enumerate(kinds) if k != "no_ids"]
    for row in rows:
        assert len(row.input_ids) == len(row.loss_mask) == len(row.behaviour_logprobs)
        on_spans = set()
        for (start, end), index in zip(row.turn_spans, row.turn_indices, strict=True):
            turn = turns[index]
            # Everything before the turn's ids is exactly the prompt it was sampled from.
            assert row.input_ids[:start] == turn.prompt_token_ids
            assert row.input_ids[start:end] == turn.token_ids
            assert row.behaviour_logprobs[start:end] == turn.logprobs
            on_spans.update(range(start, end))
        assert {i for i, m in enumerate(row.loss_mask) if m == 1} == on_spans
        assert all(row.behaviour_logprobs[i] == 0.0 for i in range(len(row)) if i not in on_spans)
        assert row.prompt_len == row.turn_spans[0][0]
        assert row.episode_id == "e/0" and row.group == "g" and row.reward is None
    assert [r.row_index for r in rows] == list(range(len(rows)))
    # One row, plus one per turn that could not continue the row before it.
    usable = [k for k in kinds if k != "no_ids"]
    metrics = token_metrics(turns)
    assert metrics[TOKEN_TURNS_WITHOUT_IDS] == kinds.count("no_ids")
    assert len(rows) == (1 + metrics[TOKEN_FORKS] if usable else 0)
    if rows:
        assert rows[-1].ends_episode == (kinds[-1] != "no_ids")


@settings(max_examples=60, deadline=None)
@given(turn_plans())
def test_continuity_names_each_turn(plan):
    turns, kinds = plan
    continuity = turn_continuity(turns)
    for i, (kind, got) in enumerate(zip(kinds, continuity, strict=True)):
        opens = not [k for k in kinds[:i] if k != "no_ids"]  # no usable turn before this one
        if kind == "no_ids":
            assert got == "no_ids"
        elif kind == "drift":
            assert got == ("first" if opens else "fork")
        else:  # extends the previous turn, unless that one had no ids
            assert got == ("first" if opens else "fork" if kinds[i - 1] == "no_ids" else "clean")


def test_hand_computed_row_with_fork_and_truncation():
    t0 = TurnRecord(text="a", prompt_token_ids=[5, 6], token_ids=[7, 2], logprobs=[-0.5, -0.25])
    t1 = TurnRecord(text="b", prompt_token_ids=[5, 6, 7, 2, 8], token_ids=[9], logprobs=[-1.0])
    t2 = TurnRecord(text="c", prompt_token_ids=[5, 6, 7, 3, 8, 9, 4], token_ids=[10, 11], logprobs=[-0.1, -0.2])
    rows = episode_to_rows(episode([t0, t1, t2], StopReason.MAX_TURNS))
    assert [r.input_ids for r in rows] == [[5, 6, 7, 2, 8, 9], [5, 6, 7, 3, 8, 9, 4, 10, 11]]
    assert [r.loss_mask for r in rows] == [[0, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0, 0, 1, 1]]
    assert rows[0].behaviour_logprobs == [0.0, 0.0, -0.5, -0.25, 0.0, -1.0]
    assert [r.turn_spans for r in rows] == [[(2, 4), (5, 6)], [(7, 9)]]
    assert [(r.ends_episode, r.truncated, r.terminated) for r in rows] == [(False, False, False), (True, True, False)]
    assert token_metrics([t0, t1, t2]) == {TOKEN_FORKS: 1.0, TOKEN_TURNS_WITHOUT_IDS: 0.0}


def test_turn_with_mismatched_logprobs_is_left_out_and_counted():
    bad = TurnRecord(text="a", prompt_token_ids=[1], token_ids=[2, 3], logprobs=[-0.1])
    assert episode_to_rows(episode([bad])) == []
    assert token_metrics([bad])[TOKEN_TURNS_WITHOUT_IDS] == 1.0


def test_next_prefix_is_last_prompt_plus_sampled_ids():
    assert next_prefix([]) == (None, 0)
    turn = TurnRecord(text="a", prompt_token_ids=[1, 2], token_ids=[3], logprobs=[-0.1], observation_start=3)
    assert next_prefix([turn]) == ([1, 2, 3], 3)
    assert next_prefix([turn.model_copy(update={"token_ids": None})]) == (None, 0)


def test_collate_pads_right_and_keeps_masks():
    torch = pytest.importorskip("torch")
    t0 = TurnRecord(text="a", prompt_token_ids=[5, 6], token_ids=[7], logprobs=[-0.5])
    t1 = TurnRecord(text="a", prompt_token_ids=[5], token_ids=[7, 8, 9], logprobs=[-0.5, -1.5, -2.5])
    rows = episodes_to_rows([episode([t0]), episode([t1])])
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [5, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["loss_mask"].tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]
    assert batch["behaviour_logprobs"].dtype == torch.float32
    assert math.isclose(batch["behaviour_logprobs"][1, 3].item(), -2.5)
    with pytest.raises(ValueError, match="at least one row"):
        collate([], pad_id=0)
