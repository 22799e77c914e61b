"""The three shipped API domains: gold replays, eval splits, determinism, forking, the checker."""

from __future__ import annotations

import collections
import copy

import pytest
from api_domains import DOMAINS, call, make, replay_gold

import toolgym
from toolgym.envs.api.splits import EVAL_SIZE, build_split, split_lines
from toolgym.envs.checker import check_env
from toolgym.envs.digest import digest
from toolgym.rollouts import ScriptedPolicy, run_episodes

READ_ONLY = {"order_status", "refuse_cancel", "event_info", "refuse_transfer", "balance"}


def env_class(env_id):
    return type(make(env_id))


@pytest.mark.parametrize("env_id", DOMAINS)
def test_gold_replay_reaches_expected_state_on_whole_eval_split(env_id):
    env = make(env_id)
    tasks = env_class(env_id).eval_tasks()
    assert len(tasks) >= EVAL_SIZE
    for task in tasks:
        reward, terminated, final = replay_gold(env, task)
        assert final == task.expected.state_digest, task.id
        assert terminated and reward == 1.0, task.id


@pytest.mark.parametrize("env_id", DOMAINS)
def test_gold_replay_through_run_episodes(env_id):
    tasks = env_class(env_id).eval_tasks()
    episodes = run_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks, concurrency=32)
    assert [e.task.id for e in episodes] == [t.id for t in tasks]
    assert all(e.reached_expected_state and e.reward == 1.0 for e in episodes), [
        e.task.id for e in episodes if e.reward != 1.0
    ]
    assert all(e.error_counts() == {} for e in episodes)


@pytest.mark.parametrize("env_id", DOMAINS)
def test_eval_split_is_reproducible_and_covers_every_family(env_id):
    cls = env_class(env_id)
    shipped = cls.eval_split.read_text(encoding="utf-8").splitlines()
    rebuilt = build_split(cls.task_generator)
    assert shipped == split_lines(rebuilt), f"{cls.eval_split} is stale: run python -m toolgym.envs.api.splits"
    families = collections.Counter(t.metadata["family"] for t in rebuilt)
    module = __import__(cls.task_generator.__module__, fromlist=["FAMILIES"])
    assert set(families) == set(module.FAMILIES)
    assert len({t.id for t in rebuilt}) == len(rebuilt)


@pytest.mark.parametrize("env_id", DOMAINS)
def test_tasks_are_seeded_distinct_and_split_apart(env_id):
    generate = env_class(env_id).task_generator
    assert generate(7) == generate(7)
    train = [generate(i) for i in range(40)]
    assert len({t.instruction for t in train}) == 40
    assert generate(3, "eval").initial_state != generate(3).initial_state


@pytest.mark.parametrize("env_id", DOMAINS)
def test_write_tasks_change_the_state_and_doing_nothing_fails(env_id):
    env = make(env_id)
    for task in env_class(env_id).eval_tasks()[:40]:
        env.reset(options={"task": task})
        untouched = env.state_digest()
        if task.metadata["family"] not in READ_ONLY:
            assert task.expected.state_digest != untouched, task.id
        _, reward, terminated, _, _ = env.step("I'm done.")
        assert terminated and reward == 0.0, task.id


@pytest.mark.parametrize("env_id", DOMAINS)
def test_reset_without_task_samples_from_the_seed(env_id):
    env = make(env_id)
    first, _ = env.reset(seed=11)
    digest_a, task_a = env.state_digest(), env.task
    again, _ = env.reset(seed=11)
    assert first.model_dump() == again.model_dump() and env.state_digest() == digest_a and env.task == task_a
    env.reset(seed=12)
    assert env.task.id != task_a.id
    assert len(first.tools) >= 8 and "policy" in first.messages[0].content.lower()


@pytest.mark.parametrize("env_id", DOMAINS)
def test_check_env(env_id):
    check_env(make(env_id), seed=3)


@pytest.mark.parametrize("env_id", DOMAINS)
def test_sixteen_siblings_forked_from_one_reset_agree(env_id):
    task = env_class(env_id).eval_tasks()[5]
    parent = make(env_id)
    parent.reset(seed=0, options={"task": task})
    call(parent, task.gold_actions[0].name, **task.gold_actions[0].arguments)  # fork mid-episode
    snap = parent.snapshot()
    texts = [
        parent.format.render_turn("", [toolgym.ToolCall(id="x", name=a.name, arguments=a.arguments)])
        for a in task.gold_actions[1:]
    ]
    texts.append(task.gold_answer)
    runs = []
    for _ in range(16):
        sibling = make(env_id)
        sibling.restore(snap)
        assert sibling.state_digest() == parent.state_digest()
        runs.append([sibling.step(t)[0].model_dump() for t in texts] + [sibling.state_digest()])
    assert all(r == runs[0] for r in runs)
    assert runs[0][-1] == task.expected.state_digest
    # Siblings wrote to their own copies: the parent's world did not move.
    assert parent.state_digest() == digest(snap.world)


@pytest.mark.parametrize("env_id", DOMAINS)
def test_snapshot_is_isolated_from_later_writes(env_id):
    env = make(env_id)
    task = next(t for t in env_class(env_id).eval_tasks() if t.metadata["family"] not in READ_ONLY)
    env.reset(options={"task": task})
    for action in task.gold_actions[:1]:
        call(env, action.name, **action.arguments)
    snap = env.snapshot()
    before = env.state_digest()
    frozen = copy.deepcopy(snap.world)
    for action in task.gold_actions[1:]:
        call(env, action.name, **action.arguments)
    assert env.state_digest() != before
    assert digest(snap.world) == digest(frozen) == before
    env.restore(snap)
    assert env.state_digest() == before
