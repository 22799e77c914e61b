"""Per-token policy versions: logged per turn, written as segments, exported with rows, bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.types import StopReason, Task
from toolgym.rollouts.episode import Episode, TurnRecord
from toolgym.rollouts.rows import episode_to_rows
from toolgym.trainers import metrics as m
from toolgym.trainers.system.staleness import (
    VERSIONS_KEY,
    VersionLog,
    bound_staleness,
    staleness_metrics,
    tag_segments,
    turn_version_list,
)


def episode_of(sampled: list[int]) -> Episode:
    """An episode whose turn t sampled ``sampled[t]`` tokens, each turn extending the previous (one row)."""
    turns, prompt = [], [1, 2, 3]
    for t, n in enumerate(sampled):
        ids = [10 + t] * n
        turns.append(TurnRecord(text="x", prompt_token_ids=list(prompt), token_ids=ids, logprobs=[-0.5] * n,
                                observation_start=1 + 2 * t + 1))
        prompt = [*prompt, *ids, 7, 8]  # the observation's tokens follow
    return Episode(id="task/0", env_id="e", task=Task(id="task", instruction="i"), seed=0, turns=turns,
                   stop_reason=StopReason.ANSWERED)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 6)), min_size=1, max_size=6), st.integers(0, 3))
def test_versions_reach_every_sampled_token_and_the_bound_holds(turns, bound):
    sampled, versions = [n for n, _ in turns], sorted(v for _, v in turns)  # versions never go back within an episode
    episode = episode_of(sampled)
    log = VersionLog()
    for turn, version in zip(episode.turns, versions, strict=True):
        log.record(episode.id, turn.observation_start - 1, version)
    tag_segments(episode, log.turn_versions(episode), iteration=0)
    assert turn_version_list(episode) == versions
    assert all(a.turn_end == b.turn_start for a, b in zip(episode.segments, episode.segments[1:], strict=False))
    assert all(a.policy_version != b.policy_version for a, b in zip(episode.segments, episode.segments[1:], strict=False))
    (row,) = episode_to_rows(episode)
    mask_before = list(row.loss_mask)
    update = max(versions)
    hist, dropped = bound_staleness([row], episode, update, bound)
    per_token = row.metadata[VERSIONS_KEY]
    assert len(per_token) == len(row.input_ids)
    assert [v >= 0 for v in per_token] == [bool(b) for b in mask_before]  # a version exactly on sampled tokens
    expected_dropped = sum(n for n, v in zip(sampled, versions, strict=True) if update - v > bound)
    assert dropped == expected_dropped
    assert sum(hist.values()) + dropped == sum(sampled)  # nothing double-counted or lost
    assert all(age <= bound for age in hist)
    kept = [t for t, v in enumerate(per_token) if v >= 0 and update - v <= bound]
    assert [t for t, b in enumerate(row.loss_mask) if b] == kept
    metrics = staleness_metrics(hist, dropped)
    assert metrics[m.STALE_TOKENS_DROPPED] == dropped
    if hist:
        assert metrics[m.STALENESS_MAX] <= bound
        assert abs(sum(v for k, v in metrics.items() if k.startswith(m.STALENESS_HIST_PREFIX)) - 1.0) < 1e-9


def test_unrecorded_turns_are_never_counted_fresh():
    episode = episode_of([2, 2])
    tag_segments(episode, [3, None], iteration=5)
    assert [(s.policy_version, s.turn_start, s.turn_end, s.iteration) for s in episode.segments] == [(3, 0, 1, 5), (-1, 1, 2, 5)]
    (row,) = episode_to_rows(episode)
    hist, dropped = bound_staleness([row], episode, update_version=3, max_staleness=2)
    assert dropped == 2 and hist == {0: 2}


def test_duplicate_keys_keep_the_older_version():
    log = VersionLog()
    log.record("a/0", 2, 5)
    log.record("a/0", 2, 3)
    log.record("a/0", 2, 4)
    assert log.get("a/0", 2) == 3


def test_rows_cut_at_the_token_budget_keep_their_versions():
    from toolgym.trainers.experience import cut_rows

    episode = episode_of([3, 3, 3])
    tag_segments(episode, [0, 1, 1], iteration=1)
    (row,) = cut_rows(episode_to_rows(episode), 4)  # the third turn is dropped, the second cut after 1 token
    assert len(row.turn_spans) == len(row.turn_indices) == 2
    hist, dropped = bound_staleness([row], episode, update_version=1, max_staleness=1)
    assert (hist, dropped) == ({1: 3, 0: 1}, 0)
    assert [v for v, bit in zip(row.metadata[VERSIONS_KEY], row.loss_mask, strict=True) if bit] == [0, 0, 0, 1]
