"""The demo task sets: UnitConv ``convert_store`` tasks with short prompts and a partial-credit rubric.

A task reads "Convert 94.18 min to s and store the result in memory as 'dose_68'. Tell me the
value." The gold solution is two calls and an answer: ``convert`` with numbers and units copied
from the request, ``store`` with the slot name from the request and the value from the tool
result, then a sentence quoting that value. Nothing needs arithmetic.

The tasks come in kinds. Two are split by the slot's word:

- ``"demonstrated"``: the slot word is ``result`` (``result_68``). ``toolgym demo`` trains and
  evaluates on these: SFT on their gold trajectories, then GRPO.
- ``"new"``: the slot word is one of the nine others (``NEW_SLOTS``: ``dose_12``, ``trip_3``, ...).
  Pretraining drops the whole ``convert_store`` family, so a model fine-tuned on the
  demonstrated kind has never seen a gold trajectory of these. They measure whether a model
  stores under the name the user asked for (``docs/main_job.md`` reports the experiment).

Two split the ``result`` tasks by the value to convert, which is what ``toolgym demo`` uses:
``"short"`` (under 100: at most two digits before the point) is demonstrated by SFT, and
``"long"`` (100 to 500) is learned by GRPO from the rubric alone. Copying a third leading digit
is the skill no demonstration shows; the base, pretrained on other families with such values,
makes it reachable by sampling (``docs/main_job.md``).

Why the demo keeps ``result``: with every slot word allowed, the shipped 1.2M base learns
to copy the slot's number after about 120 SFT steps but its *word* only after about 400; until
then it guesses one of ten words, and greedy success stays near 1 in 10.

Splits come from disjoint seed ranges, and a held-out split also drops any task whose
instruction occurs among the first ``TRAIN_LIMIT`` training tasks of its kind, so held-out tasks
are never trained on. The rubric gives partial credit (a right ``convert`` call but a wrong
``store`` still scores), so sibling episodes differ in reward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

from toolgym.envs.env import ToolEnv
from toolgym.envs.types import Limits, Task
from toolgym.rubrics.rubric import Rubric

DEMO_ENV = "toolgym/unitconv-v0"
DEMO_FAMILY = "convert_store"
DEMO_SLOT = "result"
"""The slot word of the demonstrated tasks (slots are ``result_1`` .. ``result_99``)."""
NEW_SLOTS = ("total", "leg", "answer", "dose", "trip", "batch", "load", "span", "sample")
"""Slot words of the new tasks: UnitConv's other nine, which no demonstration of this family uses."""
LONG_VALUE = 100.0
"""The "long" kind converts a value of at least this (three digits before the point); "short" a smaller one."""
Kind = Literal["demonstrated", "new", "short", "long"]
KINDS: tuple[Kind, ...] = ("demonstrated", "new", "short", "long")
TRAIN_LIMIT = 2000
"""Most training tasks a demo may draw; held-out tasks are checked against this many."""
Split = Literal["train", "heldout"]
SPLIT_SEEDS: dict[str, int] = {"train": 1_000_000, "heldout": 2_000_000}
"""First task seed of each split; the pretraining corpus uses seeds below 1,000,000 and never this family."""
DEMO_LIMITS = Limits(max_turns=4, max_tool_calls=4)
"""Two calls and an answer need three turns; one spare turn to recover from an error."""

_RUBRIC = {
    "name": "unitconv_demo",
    "description": "Convert, store and report: partial credit for each part.",
    "criteria": [
        {"id": "gold_calls", "description": "The gold convert and store calls were made with the same arguments.",
         "weight": 2, "source": {"type": "check", "check": "gold_calls_made", "params": {"tol": 0.0001}}},
        {"id": "state", "description": "The memory ends exactly as the gold solution leaves it.",
         "weight": 2, "source": {"type": "check", "check": "final_state_matches_gold"}},
        {"id": "answer", "description": "The final answer states the converted number.",
         "weight": 1, "source": {"type": "check", "check": "answer_matches", "params": {"mode": "numeric", "pick": "first", "tol": 0.0001}}},
        {"id": "format", "description": "Tool calls are well formed.", "kind": "prescriptive",
         "weight": 0.5, "source": {"type": "check", "check": "well_formed_call_rate"}},
    ],
}


def demo_rubric() -> Rubric:
    """The partial-credit rubric of the demo tasks (weights 2 calls, 2 state, 1 answer, 0.5 format)."""
    from toolgym.rubrics.loading import rubric_from_dict

    return rubric_from_dict(_RUBRIC, origin="toolgym.trainers.demo_tasks")


def demo_env(tool_format: str = "kimi_k2") -> Callable[[], ToolEnv]:
    """A factory of UnitConv envs that read the compact template's Kimi-K2 tool calls."""
    import toolgym

    def make() -> ToolEnv:
        return toolgym.make(DEMO_ENV, tool_format=tool_format)

    make.__name__ = DEMO_ENV  # episodes name the registered id, so state checks can rebuild the world
    return make


def demo_split(split: Split, n: int, kind: Kind = "demonstrated") -> list[Task]:
    """``n`` demo tasks of ``split`` ("train" or "heldout") and ``kind``, with compact prompts and demo limits.

    Args:
        split: "train" or "heldout" (disjoint seeds, no shared instruction).
        n: How many tasks.
        kind: "demonstrated" (slot word ``result``), "new" (one of ``NEW_SLOTS``), or the
            ``result`` tasks split by the value to convert: "short" (under ``LONG_VALUE``) and
            "long" (``LONG_VALUE`` or more).

    Raises:
        ValueError: an unknown split or kind, or more than ``TRAIN_LIMIT`` training tasks (the
            held-out split is only checked against that many).
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be 'demonstrated' (slot word 'result'), 'new' (the other slot words), 'short' or 'long' "
                         f"('result' tasks with a value under or at least {LONG_VALUE:g}), got {kind!r}")
    if split == "train" and n > TRAIN_LIMIT:
        raise ValueError(f"at most TRAIN_LIMIT={TRAIN_LIMIT} training tasks are kept apart from the held-out split, asked for {n}")
    from toolgym.policies.models.gold_episodes import compact_task

    return [compact_task(task, DEMO_ENV).model_copy(update={"limits": DEMO_LIMITS}) for task in _scan(split, n, kind)]


def slot_kind(slot: str) -> Kind | None:
    """The kind of a slot name (``result_7`` -> "demonstrated", ``dose_7`` -> "new"), None for others."""
    word = slot.rsplit("_", 1)[0]
    return "demonstrated" if word == DEMO_SLOT else "new" if word in NEW_SLOTS else None


def _scan(split: Split, n: int, kind: Kind) -> list[Task]:
    """The first ``n`` demo tasks of a split and kind, as the generator makes them."""
    from toolgym.envs.catalog.unitconv.tasks import generate_task, task_head

    earlier = _train_instructions(kind) if split == "heldout" else frozenset()
    found: list[Task] = []
    seed = SPLIT_SEEDS[split]
    while len(found) < n:
        family, slot = task_head(seed)
        if family == DEMO_FAMILY and slot_kind(slot) == ("new" if kind == "new" else "demonstrated"):
            task = generate_task(seed)
            if task.instruction not in earlier and _value_fits(task, kind):
                found.append(task)
        seed += 1
    return found


def _value_fits(task: Task, kind: Kind) -> bool:
    if kind not in ("short", "long"):
        return True
    return (float(task.gold_actions[0].arguments["value"]) >= LONG_VALUE) == (kind == "long")


@functools.lru_cache(maxsize=len(KINDS))
def _train_instructions(kind: Kind) -> frozenset[str]:
    """Instructions of the first ``TRAIN_LIMIT`` training tasks of a kind (its held-out split excludes them)."""
    return frozenset(task.instruction for task in _scan("train", TRAIN_LIMIT, kind))
