"""The shell task catalog: every family, seeded task generation, and the eval split.

Families live by subject in ``families_files`` (layout, permissions, archives),
``families_text`` (command output, logs, text and CSV) and ``families_code`` (make the
tests pass, git). ``generate_task(seed, split)`` cycles through the families by seed, so
the shipped eval split (``EVAL_SIZE`` tasks) holds every family at least once.

>>> generate_task(0, "eval").id
'shell-eval-0'
"""

from __future__ import annotations

from toolgym.envs.catalog.shell import families_code, families_files, families_text
from toolgym.envs.catalog.shell.draft import Family, shell_task
from toolgym.envs.types import Task

FAMILIES: dict[str, Family] = {**families_files.FAMILIES, **families_text.FAMILIES, **families_code.FAMILIES}
"""Every shell task family by name (the name is ``task.metadata["family"]``)."""

EVAL_SIZE = 2 * len(FAMILIES)
"""Tasks in the shipped eval split: each family twice."""


def generate_task(seed: int, split: str = "train") -> Task:
    """The shell task for ``seed`` in ``split`` ("train" or "eval": separate RNG streams)."""
    return shell_task(FAMILIES, seed, split)
