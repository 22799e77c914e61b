"""Errors raised at toolgym's boundaries. Each message says what was expected and what came.

Errors caused by the *model* (bad tool calls) are never raised: they become error
observations. The exceptions here are for the people using the library and for
infrastructure failures that the rollout loop attributes to their boundary.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable


class ToolgymError(Exception):
    """Base class of every error toolgym raises on purpose."""


class ToolDefinitionError(ToolgymError, TypeError):
    """A function cannot become a tool (missing type hint, docstring, bad name...)."""


class UnknownEnvError(ToolgymError, KeyError):
    """``make`` was given an id nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ResetNeeded(ToolgymError, RuntimeError):
    """``step`` was called before ``reset`` (or after ``close``)."""


class TaskFileError(ToolgymError, ValueError):
    """A task file has a line that is not a valid task."""


class ConfigError(ToolgymError, ValueError):
    """A user configuration has a bad field."""


class EnvError(ToolgymError, RuntimeError):
    """The environment itself failed (infrastructure, not the model)."""


class StepFailed(EnvError):
    """``step`` raised: the message names the turn, the error and the model input that met it,
    so a crash that the model's own input caused can be found and fixed (``step`` should not raise
    for anything the model does)."""

    def __init__(self, turn: int, action: str, cause: BaseException):
        text = action if len(action) <= 300 else action[:300] + f"... ({len(action):,} characters)"
        super().__init__(f"step of turn {turn} raised {type(cause).__name__}: {str(cause)[:300]}; model input: {text!r}")
        self.turn = turn
        self.cause_type = type(cause).__name__


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """A " Did you mean ...?" suffix with the closest choices, or "" when none is close.

    Bounded work: a word much longer than any plausible name, or beyond the first 2,000
    choices, is not compared (difflib is quadratic in the lengths).
    """
    if len(word) > 200:
        return ""
    close = difflib.get_close_matches(word, list(itertools.islice(choices, 2000)), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
