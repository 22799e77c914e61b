"""The demo task sets: two demonstrated families, and their composition that only RL trains on.

Every task comes from UnitConv's ``convert_store`` generator (slot word ``result``) and declares
the same two tools, ``convert`` and ``store``:

| family | request | gold calls |
|---|---|---|
| ``convert_only`` (SFT) | Convert 94.18 min to s. Tell me the value. | convert |
| ``store_only`` (SFT) | Take 94.18 min and store the result in memory as 'result_68'. Tell me the value. | store |
| ``convert_store`` (RL) | Convert 94.18 min to s and store the result in memory as 'result_68'. Tell me the value. | convert, store |

SFT shows gold trajectories of the first two (``SFT_FAMILIES``) and never of the last
(``RL_FAMILY``): neither the pretraining corpus (``toolgym.trainers.pretrain`` drops the family)
nor any SFT row holds a ``convert_store`` task, and no demonstration ever calls both tools. RL
trains on ``convert_store`` with the partial-credit rubric as its only signal.

Why the composition is reachable by exploration: its request opens like ``convert_only`` (so the
model makes the right ``convert`` call, which the rubric already pays for) and closes like
``store_only`` (so, at temperature 1, some siblings go on to a ``store`` call with the slot
copied from the request). What no demonstration shows is chaining them: storing the value the
``convert`` call returned, then reporting it. Siblings that chain score 1.0, siblings that stop
after ``convert`` about 0.45, so groups differ in reward from the first iteration.

Splits come from disjoint seed ranges (pretraining uses seeds below 1,000,000; each family has
its own range inside a split), and the held-out split also drops any task whose instruction
occurs among the first ``TRAIN_LIMIT`` training tasks of its family, so held-out tasks are never
trained on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

from toolgym.envs.env import ToolEnv
from toolgym.envs.types import Expected, Limits, Task
from toolgym.rubrics.rubric import Rubric

DEMO_ENV = "toolgym/unitconv-v0"
DEMO_FAMILY = "convert_store"
"""The family RL learns: never in the pretraining corpus, never in an SFT row."""
RL_FAMILY = DEMO_FAMILY
SFT_FAMILIES = ("convert_only", "store_only")
"""The demonstrated families: each shows one of the two calls of ``convert_store``."""
FAMILIES = (*SFT_FAMILIES, RL_FAMILY)
DEMO_SLOT = "result"
"""The slot word of every demo task (slots are ``result_1`` .. ``result_99``, see ``_scan``)."""
TRAIN_LIMIT = 1000
"""Most training tasks of one family a demo may draw; held-out tasks are checked against this many."""
Split = Literal["train", "heldout"]
SPLIT_SEEDS: dict[str, int] = {"train": 1_000_000, "heldout": 2_000_000}
"""First task seed of each split; the pretraining corpus uses seeds below 1,000,000 and never ``DEMO_FAMILY``."""
_FAMILY_OFFSET = {RL_FAMILY: 0, "convert_only": 300_000, "store_only": 600_000}
"""Each family draws its seeds from its own range inside a split (no two tasks share a seed)."""

_RUBRIC = {
    "name": "unitconv_demo",
    "description": "Calls, memory and answer: partial credit for each part.",
    "criteria": [
        {"id": "gold_calls", "description": "The gold calls were made with the same arguments (share of them).",
         "weight": 2, "source": {"type": "check", "check": "gold_calls_made", "params": {"tol": 0.0001}}},
        {"id": "state", "description": "The memory ends exactly as the gold solution leaves it.",
         "weight": 2, "source": {"type": "check", "check": "final_state_matches_gold"}},
        {"id": "answer", "description": "The final answer states the result.",
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


def demo_split(split: Split, n: int, family: str = DEMO_FAMILY) -> list[Task]:
    """``n`` tasks of ``family`` in ``split`` ("train" or "heldout"), with compact prompts.

    Every family declares the same two tools (``convert`` and ``store``), so the prompts differ
    only in the request. Each task has room for its gold calls, the answer and one spare turn.

    Raises:
        ValueError: an unknown split or family, or more than ``TRAIN_LIMIT`` training tasks (the
            held-out split is only checked against that many).
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if split == "train" and n > TRAIN_LIMIT:
        raise ValueError(f"at most TRAIN_LIMIT={TRAIN_LIMIT} training tasks are kept apart from the held-out split, asked for {n}")
    from toolgym.policies.models.gold_episodes import compact_task

    out = []
    for task in _scan(split, n, family):
        turns = len(task.gold_actions) + 2
        out.append(compact_task(task, DEMO_ENV).model_copy(update={
            "tools": ["convert", "store"], "limits": Limits(max_turns=turns, max_tool_calls=turns)}))
    return out


def mixed_split(split: Split, n_per_family: int, families: Sequence[str] = SFT_FAMILIES) -> list[Task]:
    """``n_per_family`` tasks of each of ``families``, interleaved (family 1, family 2, ..., family 1, ...)."""
    per = [demo_split(split, n_per_family, f) for f in families]
    return [tasks[i] for i in range(n_per_family) for tasks in per]


def _derive(task: Task, family: str) -> Task:
    """A ``convert_store`` task cut down to one of its two calls (a demonstrated family).

    ``convert_only``: "Convert 94.18 min to s. Tell me the value." -> ``convert``, then the answer.
    ``store_only``: "Take 94.18 min and store the result in memory as 'result_68'. Tell me the
    value." -> ``store`` of the number as given, then the answer. The first shares the RL
    family's opening words, the second its closing words.
    """
    from toolgym.envs.catalog.unitconv.units import PRECISION, format_number
    from toolgym.envs.digest import digest

    convert, store = task.gold_actions
    value, unit, to_unit = convert.arguments["value"], convert.arguments["from_unit"], convert.arguments["to_unit"]
    slot = store.arguments["name"]
    if family == "convert_only":
        answer = format_number(store.arguments["value"])
        return task.model_copy(update={
            "instruction": f"Convert {value} {unit} to {to_unit}. Tell me the value.", "gold_actions": [convert],
            "gold_answer": f"The result is {answer} {to_unit}.",
            "expected": Expected(state_digest=digest({"memory": {}}), outputs=[answer], answer=answer),
            "metadata": {**task.metadata, "family": family}})
    answer = format_number(value)
    return task.model_copy(update={
        "instruction": f"Take {value} {unit} and store the result in memory as '{slot}'. Tell me the value.",
        "gold_actions": [store.model_copy(update={"arguments": {"name": slot, "value": value}})],
        "gold_answer": f"The result is {answer} {unit}; stored as '{slot}'.",
        "expected": Expected(state_digest=digest({"memory": {slot: round(value, PRECISION)}}), outputs=[answer], answer=answer),
        "metadata": {**task.metadata, "family": family}})


def _scan(split: Split, n: int, family: str) -> list[Task]:
    """The first ``n`` tasks of ``family`` in a split, all with the slot word ``DEMO_SLOT``.

    One slot word keeps what the model copies to numbers: with all ten words (``answer_68``,
    ``dose_12``...) the tiny model copies the word only after ~400 SFT steps, past the demo's budget.
    The demonstrated families are cut from ``convert_store`` tasks of their own seed range.
    """
    from toolgym.envs.catalog.unitconv.tasks import generate_task, task_head

    earlier = _train_instructions(family) if split == "heldout" else frozenset()
    found: list[Task] = []
    seed = SPLIT_SEEDS[split] + _FAMILY_OFFSET[family]
    while len(found) < n:
        head_family, slot = task_head(seed)
        if head_family == RL_FAMILY and slot.startswith(DEMO_SLOT + "_"):
            task = generate_task(seed)
            task = task if family == RL_FAMILY else _derive(task, family)
            if task.instruction not in earlier:
                found.append(task)
        seed += 1
    return found


@functools.lru_cache(maxsize=len(FAMILIES))
def _train_instructions(family: str) -> frozenset[str]:
    """Instructions of the first ``TRAIN_LIMIT`` training tasks of ``family`` (held-out excludes them)."""
    return frozenset(task.instruction for task in _scan("train", TRAIN_LIMIT, family))
