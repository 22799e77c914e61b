"""Demo task sets: the RL family is never demonstrated, held-out tasks are never trained on, gold is
solvable and partial solutions get partial credit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.catalog.unitconv.tasks import generate_task, task_head
from toolgym.envs.formats import get_format
from toolgym.envs.types import ToolCall
from toolgym.rollouts import ScriptedPolicy, run_episodes
from toolgym.rubrics.scoring import score_episodes_sync
from toolgym.trainers.demo_tasks import (
    DEMO_FAMILY,
    DEMO_SLOT,
    FAMILIES,
    RL_FAMILY,
    SFT_FAMILIES,
    TRAIN_LIMIT,
    demo_env,
    demo_rubric,
    demo_split,
    mixed_split,
)


def test_the_rl_family_is_the_one_pretraining_drops_and_no_sft_family():
    assert RL_FAMILY == DEMO_FAMILY and RL_FAMILY not in SFT_FAMILIES
    assert FAMILIES == ("convert_only", "store_only", "convert_store")


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 60), st.sampled_from(["train", "heldout"]))
def test_sft_task_sets_never_contain_the_rl_family_nor_both_calls(n, split):
    tasks = mixed_split(split, n)
    assert len(tasks) == n * len(SFT_FAMILIES)
    assert {t.metadata["family"] for t in tasks} == set(SFT_FAMILIES)
    # Each demonstration shows one tool; none shows the convert-then-store chain RL must find.
    assert all(len(t.gold_actions) == 1 for t in tasks)
    assert {t.gold_actions[0].name for t in tasks} == {"convert", "store"}
    assert not any(" to " in t.instruction and "store" in t.instruction for t in tasks)
    rl = demo_split(split, n, RL_FAMILY)
    assert all(t.metadata["family"] == RL_FAMILY and [a.name for a in t.gold_actions] == ["convert", "store"] for t in rl)
    assert all(t.tools == ["convert", "store"] for t in tasks + rl)  # one prompt shape for every family


def test_pretraining_corpus_never_holds_the_rl_family_nor_a_heldout_task():
    from toolgym.policies.models.gold_episodes import gold_conversations
    from toolgym.trainers.pretrain import pretraining_rows

    # The corpus filter pretraining_rows applies, on the same seeds the shipped base used (first 1500 of 8000).
    convs = gold_conversations("toolgym/unitconv-v0", range(1500), keep=lambda t: t.metadata.get("family") != DEMO_FAMILY)
    assert {c.task.metadata["family"] for c in convs} == {"convert_scale", "sum_convert", "recall_convert"}
    heldout = {t.instruction for f in FAMILIES for t in demo_split("heldout", 200, f)}
    assert not heldout & {c.task.instruction for c in convs}
    with pytest.raises(ValueError, match="below"):
        pretraining_rows(None, {"toolgym/unitconv-v0": 1_000_001}, max_len=8)


@pytest.mark.parametrize("family", FAMILIES)
def test_heldout_split_is_large_and_disjoint_from_training(family):
    heldout = demo_split("heldout", 200, family)
    train = demo_split("train", 800, family)
    assert len(heldout) == 200 and len({t.id for t in heldout}) == 200
    assert not {t.instruction for t in heldout} & {t.instruction for t in train}
    assert not {t.metadata["seed"] for t in heldout} & {t.metadata["seed"] for t in train}
    assert all(t.metadata["family"] == family for t in heldout)
    assert all((f"as '{DEMO_SLOT}_" in t.instruction) == (family != "convert_only") for t in heldout)


def test_bad_arguments_are_refused_naming_the_fix():
    with pytest.raises(ValueError, match="TRAIN_LIMIT"):
        demo_split("train", TRAIN_LIMIT + 1)
    with pytest.raises(ValueError, match="family must be one of"):
        demo_split("train", 3, "convert_twice")
    with pytest.raises(ValueError, match="split must be"):
        demo_split("test", 3)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40))
def test_task_head_names_the_family_and_slot_generate_task_makes(seed):
    family, slot = task_head(seed)
    task = generate_task(seed)
    assert task.metadata["family"] == family and f"'{slot}'" in task.instruction


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_scores_full_marks_and_silence_scores_low(family):
    tasks = demo_split("train", 4, family)
    gold = run_episodes(demo_env(), ScriptedPolicy.gold(tasks, "kimi_k2"), tasks=tasks)
    silent = run_episodes(demo_env(), ScriptedPolicy({}, default=["I cannot."]), tasks=tasks)
    scores = score_episodes_sync(gold + silent, demo_rubric())
    assert [s.total for s in scores[:4]] == [1.0] * 4
    # Silence leaves memory as convert_only's gold does (state credit only); elsewhere it earns nothing.
    assert [s.total for s in scores[4:]] == [0.4 if family == "convert_only" else 0.0] * 4


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 50), st.sampled_from(["convert_only", "wrong_store", "no_answer"]))
def test_partial_solutions_of_the_rl_family_get_partial_credit(index, mistake):
    task = demo_split("train", 51, RL_FAMILY)[index]
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
