"""From scored episodes to rows: token budgets, unscorable episodes, groups (no model needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.types import StopReason, Task
from toolgym.rollouts.episode import Episode, Failure, TurnRecord
from toolgym.rollouts.rows import episode_to_rows
from toolgym.rubrics.score import Score, Unscorable
from toolgym.trainers.experience import BUDGET_STOP, collect, cut_rows, sampled_tokens


def episode(turn_lengths: list[int], *, task_budget: int | None = None, failed: bool = False, name: str = "e") -> Episode:
    """An episode whose turns extend each other cleanly (one row), with ``turn_lengths`` sampled ids each."""
    prompt, turns = [1, 2, 3], []
    for k, n in enumerate(turn_lengths):
        ids = [100 + k] * n
        turns.append(TurnRecord(text="x", prompt_token_ids=list(prompt), token_ids=ids, logprobs=[-0.5] * n))
        prompt = prompt + ids + [7, 8]  # two observation tokens before the next turn
    metadata = {"token_budget": task_budget} if task_budget is not None else {}
    return Episode(id=name, env_id="x", task=Task(id=name, instruction="i", metadata=metadata), seed=0, turns=turns,
                   stop_reason=StopReason.ANSWERED,
                   failure=Failure(boundary="env", kind="crash", message="boom") if failed else None)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), budget=st.integers(1, 30))
def test_cut_rows_keeps_exactly_the_budget(lengths, budget):
    ep = episode(lengths)
    rows = episode_to_rows(ep)
    cut = cut_rows(rows, budget)
    kept = sum(sum(r.loss_mask) for r in cut)
    assert kept == min(budget, sampled_tokens(ep))
    for original, row in zip(rows, cut, strict=False):
        n = len(row.input_ids)
        assert row.input_ids == original.input_ids[:n] and row.loss_mask == original.loss_mask[:n]
        assert len(row.behaviour_logprobs) == n and row.loss_mask[-1] == 1  # cut right after a sampled token
    if budget < sampled_tokens(ep):
        assert cut[-1].truncated and not cut[-1].terminated


def score(total: float | None) -> Score:
    if total is None:
        return Score(rubric="r", episode_id="e", unscorable=Unscorable(kind="judge_error", message="down"))
    return Score(rubric="r", episode_id="e", total=total)


def test_collect_drops_unscorable_and_penalizes_over_budget():
    eps = [episode([4]), episode([4], failed=True), episode([2, 3], task_budget=4), episode([1])]
    scores = [score(0.5), score(0.9), score(0.75), score(None)]
    out = collect(eps, scores, 2, budget=None, penalty=0.25)
    assert out.unscorable == 2 and out.episodes == 4 and out.over_budget == 1
    assert [len(g) for g in out.groups] == [1, 1]
    over = out.groups[1][0]
    assert over.over_budget and over.reward == 0.5 and over.score == 0.75
    assert over.episode.metadata["budget_stop"] == BUDGET_STOP
    assert sum(sum(r.loss_mask) for r in over.rows) == 4
    kept = out.groups[0][0]
    assert kept.reward == 0.5 and not kept.over_budget
