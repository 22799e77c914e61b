"""How a shell task is written: a ``ShellDraft`` per task, a family per kind of task.

A family is a function ``rng -> ShellDraft`` that lays out a starting workspace (files and
setup commands), says what to do, gives the gold tool calls, and states how success is
verified, computed here from the task's meaning and never by running the gold commands:

* ``expected_files``: final contents of files (exact text, ``None`` for "must not exist", or a
  matcher such as ``{"$regex": ...}``), read by the ``files_as_expected`` check;
* ``check``: a bash command run in the workspace after the episode; exit status 0 means done
  (used where the outcome is not file contents: permissions, git history, archives, tests);
* ``outputs``: strings the final answer must contain (command-output questions).

The gold-replay test runs every family's gold calls on every sandbox backend and requires
all three to hold, so a family whose expectations disagree with real tools fails there.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolgym.envs.types import Expected, GoldAction, Task

GIT_DATE = "2026-01-01T00:00:00+00:00"
GIT_INIT = (
    f"export GIT_AUTHOR_DATE={GIT_DATE} GIT_COMMITTER_DATE={GIT_DATE}; "
    "git init -q -b main && git config user.name 'Dev Example' && git config user.email dev@example.com"
)
"""Setup prefix of git tasks: a repo whose setup commits have fixed dates and an identity in .git/config."""

PYTHON = "/usr/bin/python3 -I -S"
"""The checks' interpreter: isolated (no PYTHON* variables, no user site, the script's folder
not on the path) and without site hooks, so nothing in the project runs before it asks."""
UNITTEST = PYTHON + " -c 'import os, sys; sys.path.append(os.getcwd()); import unittest; unittest.main(module=None, argv=[\"unittest\", \"discover\", \"-t\", \".\"])'"
"""``python3 -m unittest`` with the project's folder AFTER the standard library on the path: a
project file named like a stdlib module (``unittest.py``, ``re.py``) cannot replace it."""


def python_probe(module: str, function: str, calls: list[list[Any]]) -> str:
    """A command printing, as JSON on one line, ``function(*args)`` for each of ``calls``."""
    script = f"import json, os, sys; sys.path.append(os.getcwd()); from {module} import {function} as f; print(json.dumps([f(*a) for a in {json.dumps(calls)}]))"
    return f"{PYTHON} -c {quote(script)}"

WORDS = (
    "alpha", "bravo", "cedar", "delta", "ember", "falcon", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lantern", "meadow", "nectar", "orchid", "pepper", "quartz", "raven", "saffron", "timber",
    "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "amber", "basil", "cobalt", "dune",
)
NAMES = ("ada", "ben", "chloe", "dev", "emma", "felix", "grace", "hugo", "iris", "jon", "kai", "lena", "milo", "nora", "omar", "pia")
CITIES = ("Austin", "Berlin", "Cairo", "Denver", "Lisbon", "Lyon", "Madrid", "Oslo", "Porto", "Quito", "Riga", "Seoul")


@dataclass(kw_only=True)
class ShellDraft:
    """A shell task under construction."""

    instruction: str
    """What the user asks."""
    files: dict[str, str] = field(default_factory=dict)
    """Starting workspace: relative path -> text."""
    setup: list[str] = field(default_factory=list)
    """Bash commands run once after the files are written (archives, git history, modes)."""
    gold: list[GoldAction] = field(default_factory=list)
    """The gold tool calls, in order."""
    answer: str = "Done."
    """The gold final answer."""
    outputs: list[str] = field(default_factory=list)
    """Strings a correct final answer must contain."""
    expected_files: dict[str, Any] = field(default_factory=dict)
    """Final file contents a correct episode leaves (see the module docstring)."""
    check: str | None = None
    """Bash command whose exit status 0 means the task is done."""
    probe: tuple[str, Any] | None = None
    """A hidden check: (bash command, the JSON value its last stdout line must hold). Run after
    the episode on inputs the model never saw, so a shortcut (tests deleted, a module that
    patches unittest, a printed summary) that makes the visible tests pass still fails it."""
    category: str = ""
    """One of ``CATEGORIES``."""

    def bash(self, command: str) -> None:
        """Append the gold call ``bash(command)``."""
        self.gold.append(GoldAction(name="bash", arguments={"command": command}))

    def write(self, path: str, content: str) -> None:
        """Append the gold call ``write_file(path, content)``."""
        self.gold.append(GoldAction(name="write_file", arguments={"path": path, "content": content}))


CATEGORIES = ("files", "output", "tests", "logs", "text", "git", "permissions", "archives")
"""What the catalog covers; every family belongs to one."""

Family = Callable[[random.Random], ShellDraft]


def shell_task(families: dict[str, Family], seed: int, split: str) -> Task:
    """The shell task for ``seed`` in ``split``.

    Families take turns (``seed % len(families)`` in name order), so any run of as many seeds
    as there are families covers them all; the seeded RNG ``f"shell/{split}/{seed}"`` fills in
    the details. The task id is ``f"shell-{split}-{seed}"``.
    """
    names = sorted(families)
    family = names[seed % len(names)]
    draft = families[family](random.Random(f"shell/{split}/{seed}"))
    if draft.category not in CATEGORIES:
        raise ValueError(f"family {family!r} has category {draft.category!r}; choose from {CATEGORIES}")
    metadata: dict[str, Any] = {"family": family, "category": draft.category, "seed": seed, "split": split}
    if draft.expected_files:
        metadata["expected_files"] = draft.expected_files
    if draft.check is not None:
        metadata["check"] = draft.check
    if draft.probe is not None:
        metadata["probe"] = {"command": draft.probe[0], "expect": draft.probe[1]}
    state: dict[str, Any] = {"files": draft.files}
    if draft.setup:
        state["setup"] = draft.setup
    return Task(
        id=f"shell-{split}-{seed}",
        instruction=draft.instruction,
        initial_state=state,
        gold_actions=draft.gold,
        gold_answer=draft.answer,
        expected=Expected(outputs=draft.outputs),
        metadata=metadata,
    )


def pick(rng: random.Random, pool: tuple[str, ...] | list[str], k: int) -> list[str]:
    """``k`` distinct items of ``pool`` in a seeded order."""
    return rng.sample(list(pool), k)


def quote(text: str) -> str:
    """Single-quote ``text`` for bash."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def lines(items: list[str]) -> str:
    """Items one per line, with a final newline (empty string for no items)."""
    return "".join(f"{item}\n" for item in items)
