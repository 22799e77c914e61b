"""The shell task catalog: every family, seeded task generation, and the eval split.

Families live by subject in ``families_files`` (layout, permissions, archives),
``families_text`` (command output, logs, text and CSV) and ``families_code`` (make the
tests pass, git). ``generate_task(seed, split)`` cycles through the families by seed, so
the shipped eval split (``EVAL_SIZE`` tasks) holds every family at least once.

Rewrite the shipped split after changing a family::

    python -m toolgym.envs.catalog.shell.tasks

>>> generate_task(0, "eval").id
'shell-eval-0'
"""

from __future__ import annotations

from pathlib import Path

from toolgym.envs.api.splits import build_split
from toolgym.envs.catalog.shell import families_code, families_files, families_text
from toolgym.envs.catalog.shell.draft import Family, shell_task
from toolgym.envs.taskfile import save_tasks
from toolgym.envs.types import Task

FAMILIES: dict[str, Family] = {**families_files.FAMILIES, **families_text.FAMILIES, **families_code.FAMILIES}
"""Every shell task family by name (the name is ``task.metadata["family"]``)."""

EVAL_SIZE = 2 * len(FAMILIES)
"""Tasks in the shipped eval split: each family twice."""


def generate_task(seed: int, split: str = "train") -> Task:
    """The shell task for ``seed`` in ``split`` ("train" or "eval": separate RNG streams)."""
    return shell_task(FAMILIES, seed, split)


def write_eval_split() -> Path:
    """Rebuild ``eval.jsonl`` next to this module from ``generate_task``."""
    return save_tasks(build_split(generate_task, EVAL_SIZE), Path(__file__).with_name("eval.jsonl"))


if __name__ == "__main__":
    print(f"wrote {write_eval_split()}")
