"""Partial rollouts: paused episodes resume where they stopped, on either pool, segment by segment."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.errors import ConfigError
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, run_episodes, sample_tasks
from toolgym.rollouts.partial import PartialRollouts

UNITCONV = "toolgym/unitconv-v0"


def drain(runs, policy, tasks, first_version=0):
    """Iterations until nothing is paused; the version goes up by one per iteration."""
    done = runs.run_iteration(policy, policy_version=first_version, tasks=tasks)
    version = first_version
    while runs.paused:
        version += 1
        done += runs.run_iteration(policy, policy_version=version)
        assert version < 100, "an episode never finished"
    return done


def comparable(episode):
    return episode.without_timings(exclude={"segments"})


def check_segments(episode):
    spans = [(s.turn_start, s.turn_end) for s in episode.segments]
    assert spans[0][0] == 0 and spans[-1][1] == len(episode.turns)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, nothing lost or repeated
    assert [s.policy_version for s in episode.segments] == sorted(s.policy_version for s in episode.segments)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 5_000), budget=st.integers(1, 4), keep_alive=st.booleans(), chaos=st.booleans())
def test_budgeted_episodes_equal_unbudgeted_ones_when_the_policy_stays(seed, budget, keep_alive, chaos):
    tasks = sample_tasks(UNITCONV, n=6, seed=seed)
    make = (lambda: ChaosPolicy(answer_rate=0.2)) if chaos else (lambda: ScriptedPolicy.gold(tasks))
    whole = run_episodes(UNITCONV, make(), tasks=tasks, seed=seed, group_size=2)
    runs = PartialRollouts(UNITCONV, turn_budget=budget, keep_alive=keep_alive, seed=seed, group_size=2)
    parts = drain(runs, make(), tasks)
    assert sorted(map(comparable, parts), key=lambda d: (d["id"], d["group"])) == sorted(map(comparable, whole), key=lambda d: (d["id"], d["group"]))
    for ep in parts:
        check_segments(ep)
        assert all(s.turn_end - s.turn_start <= budget for s in ep.segments)


def test_late_tasks_join_while_earlier_episodes_are_paused():
    tasks = sample_tasks(UNITCONV, n=4, seed=2)
    policy = ScriptedPolicy.gold(tasks)
    runs = PartialRollouts(UNITCONV, turn_budget=1)
    assert runs.run_iteration(policy, policy_version=0, tasks=tasks[:2]) == []
    assert runs.paused == 2
    later = runs.run_iteration(policy, policy_version=1, tasks=tasks[2:])
    done = later + drain(runs, policy, None, first_version=2)
    assert sorted(e.task.id for e in done) == sorted(t.id for t in tasks)
    first_two = [e for e in done if e.task.id in {t.id for t in tasks[:2]}]
    assert all(e.segments[0].policy_version == 0 and e.segments[0].iteration == 0 for e in first_two)
    assert all(e.reached_expected_state for e in done)


def test_budget_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="turn_budget=<turns> or token_budget"):
        PartialRollouts(UNITCONV)
    with pytest.raises(ConfigError, match="turn_budget must be >= 1"):
        PartialRollouts(UNITCONV, turn_budget=0)
    tasks = sample_tasks(UNITCONV, n=1)
    runs = PartialRollouts(UNITCONV, token_budget=16)
    with pytest.raises(ConfigError, match="token_budget needs a policy that returns token ids"):
        runs.run_iteration(ScriptedPolicy.gold(tasks), policy_version=0, tasks=tasks)


def test_partial_rollouts_on_the_ray_pool_equal_local_ones(ray_local):
    from toolgym.rollouts.ray_pool import RayEnvPool

    tasks = sample_tasks(UNITCONV, n=10, seed=7)
    by_id = lambda eps: sorted(eps, key=lambda e: e.id)
    with RayEnvPool(actors=2, num_cpus=0.5) as pool:
        for keep_alive in (True, False):  # env kept on its actor / snapshot, released, restored anywhere
            local = drain(PartialRollouts(UNITCONV, turn_budget=2, keep_alive=keep_alive), ScriptedPolicy.gold(tasks), tasks)
            remote = drain(PartialRollouts(UNITCONV, turn_budget=2, keep_alive=keep_alive, pool=pool), ScriptedPolicy.gold(tasks), tasks)
            assert [comparable(e) for e in by_id(remote)] == [comparable(e) for e in by_id(local)]
            assert [e.segments for e in by_id(remote)] == [e.segments for e in by_id(local)]
