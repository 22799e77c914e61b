"""The demo task set: UnitConv ``convert_store`` tasks with short prompts and a partial-credit rubric.

A task reads "Convert 94.18 min to s and store the result in memory as 'result_68'. Tell me the
value." The gold solution is two calls and an answer: ``convert`` with numbers and units copied
from the request, ``store`` with the slot name from the request and the value from the tool
result, then a sentence quoting that value. Everything the model must write is copied from
its context, which a small model can learn; nothing needs arithmetic.

The demo keeps the tasks whose slot word is ``result`` (one in ten ``convert_store`` tasks), so
the slot is ``result_NN`` and what varies is numbers. Measured on the shipped 1.2M base: SFT
teaches it to copy numbers after about 120 steps, but copying a slot *word* (which also occurs
in the request's own text, as in "store the result ... as 'result_68'") only after about 400,
past the demo's time budget; with every slot word allowed, greedy success stays at the 1-in-10
of a guessed word.

Splits come from disjoint seed ranges, and the held-out split also drops any task whose
instruction occurs among the first ``TRAIN_LIMIT`` training tasks, so held-out tasks are never
trained on.

The rubric gives partial credit (a right ``convert`` call but a wrong ``store`` still scores),
so sibling episodes differ in reward from the first RL step.
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
"""The slot word of every demo task (slots are ``result_1`` .. ``result_99``)."""
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


def demo_split(split: Split, n: int) -> list[Task]:
    """``n`` demo tasks of ``split`` ("train" or "heldout"), with compact prompts and demo limits.

    Raises:
        ValueError: an unknown split, or more than ``TRAIN_LIMIT`` training tasks (the held-out
            split is only checked against that many).
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if split == "train" and n > TRAIN_LIMIT:
        raise ValueError(f"at most TRAIN_LIMIT={TRAIN_LIMIT} training tasks are kept apart from the held-out split, asked for {n}")
    from toolgym.policies.models.gold_episodes import compact_task

    return [compact_task(task, DEMO_ENV).model_copy(update={"limits": DEMO_LIMITS}) for task in _scan(split, n)]


def _scan(split: Split, n: int) -> list[Task]:
    """The first ``n`` demo tasks of a split, as the generator makes them."""
    from toolgym.envs.catalog.unitconv.tasks import generate_task, task_head

    earlier = _train_instructions() if split == "heldout" else frozenset()
    found: list[Task] = []
    seed = SPLIT_SEEDS[split]
    while len(found) < n:
        family, slot = task_head(seed)
        if family == DEMO_FAMILY and slot.startswith(DEMO_SLOT + "_"):
            task = generate_task(seed)
            if task.instruction not in earlier:
                found.append(task)
        seed += 1
    return found


@functools.lru_cache(maxsize=1)
def _train_instructions() -> frozenset[str]:
    """Instructions of the first ``TRAIN_LIMIT`` training tasks (the held-out split excludes them)."""
    return frozenset(task.instruction for task in _scan("train", TRAIN_LIMIT))
