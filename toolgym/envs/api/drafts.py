"""Seeded task generation shared by the API domains: a ``Draft`` per task, a family per draft.

A domain writes task *families*, functions ``rng -> Draft`` that build a world, the gold
actions and the expected final world from the task's meaning; ``seeded_task`` turns the family
chosen by a seed into a ``Task``. The RNG stream ``f"{domain}/{split}/{seed}"`` and the task id
``f"{domain}-{split}-{seed}"`` are part of every shipped eval split, so they must not change.

>>> from toolgym.envs.catalog.retail.tasks import FAMILIES
>>> seeded_task("retail", FAMILIES, 0, "eval").id
'retail-eval-0'
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from toolgym.envs.digest import digest
from toolgym.envs.types import Expected, GoldAction, Task

S = TypeVar("S", bound=BaseModel)


# kw_only: domains add required fields (the customer, the week) after the defaulted ones.
@dataclass(kw_only=True)
class Draft(Generic[S]):
    """A task under construction: the world before, the world after, and how to get there.

    Domains subclass it to add what their families share (the customer) and, where every
    task starts the same way, override ``freeze`` (e.g. to authenticate the caller).
    """

    world: S
    """The initial state; families may still edit it until ``freeze``."""
    final: S = field(init=False)
    """The expected final state, a copy of ``world`` made by ``freeze`` and edited to match the task."""
    instruction: str = ""
    """What the user asks."""
    gold: list[GoldAction] = field(default_factory=list)
    """The gold tool calls, in order."""
    answer: str = ""
    """The gold final answer."""
    outputs: list[str] = field(default_factory=list)
    """Strings a correct answer must contain."""

    def freeze(self) -> None:
        """The world is complete: from here on, changes go to ``final`` only."""
        self.final = copy.deepcopy(self.world)

    def call(self, name: str, **arguments: object) -> None:
        """Append the gold call ``name(**arguments)``."""
        self.gold.append(GoldAction(name=name, arguments=arguments))

    def task_instruction(self) -> str:
        """The instruction as the task states it (override to prefix context every task shares)."""
        return self.instruction


Family = Callable[[random.Random], Draft]
"""A task family: builds one ``Draft`` from a seeded RNG."""


def seeded_task(domain: str, families: Mapping[str, Family], seed: int, split: str) -> Task:
    """The ``domain`` task for ``seed`` in ``split``: a seeded family choice, then its draft.

    Args:
        domain: The domain's name; it seeds the RNG and prefixes the task id.
        families: Task families by name; the name is recorded as ``metadata["family"]``.
        seed: Any integer; the same seed gives the same task.
        split: "train" or "eval" (separate RNG streams).
    """
    rng = random.Random(f"{domain}/{split}/{seed}")
    family = rng.choice(sorted(families))
    draft = families[family](rng)
    return Task(
        id=f"{domain}-{split}-{seed}",
        instruction=draft.task_instruction(),
        initial_state=draft.world.model_dump(mode="json"),
        gold_actions=draft.gold,
        gold_answer=draft.answer,
        expected=Expected(state_digest=digest(draft.final), outputs=draft.outputs),
        metadata={"family": family, "seed": seed, "split": split},
    )
