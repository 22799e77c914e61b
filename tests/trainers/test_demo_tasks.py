"""Demo task sets: disjoint splits and kinds, compact prompts, gold solvable, partial credit in between."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.catalog.unitconv.tasks import _SLOTS, generate_task, task_head
from toolgym.envs.formats import get_format
from toolgym.envs.types import ToolCall
from toolgym.rollouts import ScriptedPolicy, run_episodes
from toolgym.rubrics.scoring import score_episodes_sync
from toolgym.trainers.demo_tasks import (
    DEMO_FAMILY,
    DEMO_SLOT,
    NEW_SLOTS,
    TRAIN_LIMIT,
    demo_env,
    demo_rubric,
    demo_split,
    slot_kind,
)


def test_heldout_split_is_large_and_disjoint_from_training():
    heldout = demo_split("heldout", 200)
    train = demo_split("train", 800)
    assert len(heldout) == 200 and len({t.id for t in heldout}) == 200
    assert not {t.instruction for t in heldout} & {t.instruction for t in train}
    assert not {t.metadata["seed"] for t in heldout} & {t.metadata["seed"] for t in train}
    assert all(t.metadata["family"] == DEMO_FAMILY and t.tools == ["convert", "store"] for t in heldout)
    assert all(f"as '{DEMO_SLOT}_" in t.instruction for t in heldout + train)


def test_new_kind_uses_only_the_other_slot_words_and_never_meets_the_demonstrated_one():
    assert sorted((DEMO_SLOT, *NEW_SLOTS)) == sorted(_SLOTS)
    new_heldout, new_train = demo_split("heldout", 200, "new"), demo_split("train", 200, "new")
    demonstrated = demo_split("train", 200) + demo_split("heldout", 100)
    assert len({t.id for t in new_heldout}) == 200
    assert not {t.instruction for t in new_heldout} & {t.instruction for t in new_train}
    assert not {t.metadata["seed"] for t in new_heldout + new_train} & {t.metadata["seed"] for t in demonstrated}
    for task in new_heldout + new_train:
        slot = task.gold_actions[1].arguments["name"]
        assert task.metadata["family"] == DEMO_FAMILY and slot_kind(slot) == "new" and f"'{slot}'" in task.instruction
    # Every new slot word is in the held-out set, so the gain is not one word's.
    assert {t.gold_actions[1].arguments["name"].rsplit("_", 1)[0] for t in new_heldout} == set(NEW_SLOTS)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(_SLOTS), st.integers(1, 99))
def test_slot_kind_splits_the_ten_words_one_against_nine(word, number):
    assert slot_kind(f"{word}_{number}") == ("demonstrated" if word == DEMO_SLOT else "new")


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'demonstrated'.*'new'"):
        demo_split("train", 1, "other")  # type: ignore[arg-type]


def test_more_training_tasks_than_the_heldout_check_covers_are_refused():
    with pytest.raises(ValueError, match="TRAIN_LIMIT"):
        demo_split("train", TRAIN_LIMIT + 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40))
def test_task_head_names_the_family_and_slot_generate_task_makes(seed):
    family, slot = task_head(seed)
    task = generate_task(seed)
    assert task.metadata["family"] == family and f"'{slot}'" in task.instruction


def test_gold_scores_full_marks_and_silence_scores_zero():
    tasks = demo_split("train", 6)
    gold = run_episodes(demo_env(), ScriptedPolicy.gold(tasks, "kimi_k2"), tasks=tasks)
    silent = run_episodes(demo_env(), ScriptedPolicy({}, default=["I cannot."]), tasks=tasks)
    scores = score_episodes_sync(gold + silent, demo_rubric())
    assert [s.total for s in scores] == [1.0] * 6 + [0.0] * 6


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 50), st.sampled_from(["convert_only", "wrong_store", "no_answer"]))
def test_partial_solutions_get_partial_credit(index, mistake):
    task = demo_split("train", 51)[index]
    fmt = get_format("kimi_k2")
    convert, store = task.gold_actions
    turns = [fmt.render_turn("", [ToolCall(id="functions.convert:0", name="convert", arguments=convert.arguments)])]
    if mistake == "wrong_store":
        wrong = {**store.arguments, "value": store.arguments["value"] + 1.0}
        turns.append(fmt.render_turn("", [ToolCall(id="functions.store:1", name="store", arguments=wrong)]))
    elif mistake == "no_answer":
        turns.append(fmt.render_turn("", [ToolCall(id="functions.store:1", name="store", arguments=store.arguments)]))
    turns.append("Done." if mistake != "convert_only" else task.gold_answer)
    episode = run_episodes(demo_env(), ScriptedPolicy({task.id: turns}), tasks=[task])[0]
    total = score_episodes_sync([episode], demo_rubric())[0].total
    assert total is not None and 0.0 < total < 1.0, (mistake, total)


def test_short_and_long_kinds_split_result_tasks_by_value_and_never_share_a_task():
    from toolgym.trainers.demo_tasks import LONG_VALUE

    short, long_train, long_heldout = demo_split("train", 100, "short"), demo_split("train", 100, "long"), demo_split("heldout", 100, "long")
    assert all(float(t.gold_actions[0].arguments["value"]) < LONG_VALUE for t in short)
    assert all(float(t.gold_actions[0].arguments["value"]) >= LONG_VALUE for t in long_train + long_heldout)
    assert all(t.gold_actions[1].arguments["name"].startswith("result_") for t in short + long_train + long_heldout)
    assert not {t.instruction for t in long_heldout} & {t.instruction for t in long_train + short}
