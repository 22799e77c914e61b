"""The named checks a rubric can refer to, how new ones join, and how params are validated and run.

A check is a plain function whose name is its metric name. ``register_check`` adds one, so a
custom verifiable reward needs no wrapper and rubric files refer to it by name:

>>> from toolgym.rubrics.checks.registry import CHECKS, register_check
>>> @register_check
... def answer_is_short(task, episode, *, limit: int = 80) -> float:
...     '''1.0 when the final answer has at most ``limit`` characters.'''
...     return float(len(episode.final_answer) <= limit)
>>> CHECKS["answer_is_short"] is answer_is_short
True
>>> del CHECKS["answer_is_short"]  # (doctest clean-up; a real check stays registered)
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from toolgym.envs.types import Task
from toolgym.errors import ConfigError, did_you_mean
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.checks.answer import answer_matches, required_outputs_present
from toolgym.rubrics.checks.base import CheckFn
from toolgym.rubrics.checks.calls import (
    called_before,
    efficiency_vs_gold,
    forbidden_actions,
    gold_calls_made,
    tool_called,
    tool_not_called,
    well_formed_call_rate,
)
from toolgym.rubrics.checks.shell import files_as_expected, tests_pass
from toolgym.rubrics.checks.state import final_state_matches_gold

CHECKS: dict[str, CheckFn] = {
    fn.__name__: fn
    for fn in (
        final_state_matches_gold,
        required_outputs_present,
        answer_matches,
        tool_called,
        tool_not_called,
        gold_calls_made,
        called_before,
        forbidden_actions,
        well_formed_call_rate,
        efficiency_vs_gold,
        tests_pass,
        files_as_expected,
    )
}
"""Every check by its name, which is also its metric name (the shipped ones and registered ones)."""

BUILTIN_CHECKS: tuple[str, ...] = tuple(CHECKS)
"""The names of the checks toolgym ships (the reference page lists these)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
F = TypeVar("F", bound=Callable[..., Any])


@overload
def register_check(fn: F, /, *, name: str | None = None, replace: bool = False) -> F: ...
@overload
def register_check(fn: None = None, /, *, name: str | None = None, replace: bool = False) -> Callable[[F], F]: ...
def register_check(fn: Any = None, /, *, name: str | None = None, replace: bool = False) -> Any:
    """Register a plain function as a check; use as ``@register_check`` or ``register_check(fn)``.

    The function is called as ``fn(task, episode)`` (or ``fn(task, episode, env)`` when it takes a
    third positional parameter) plus its keyword-only params, which rubric files set under
    ``params`` and which are validated from their type hints when a rubric loads. It returns a
    number in [0, 1] (a bool counts as 0 or 1), or None when it does not apply to the task. An
    exception inside it makes the criterion unscorable (``check_error``), never 0; raise
    ``CheckUnscorable`` when the episode lacks what the check needs (``missing_data``).

    Args:
        fn: The function (omit it to use ``register_check(name=...)`` as a decorator).
        name: The check's name and metric name (default: the function's ``__name__``).
        replace: Replace another function already registered under the name.

    Returns:
        ``fn`` itself, unchanged.

    Raises:
        ConfigError: the name is taken by another function, is not an identifier, or the
            function's signature cannot be a check (the message says which part and the fix).
    """

    def add(f: F) -> F:
        check_name = name if name is not None else getattr(f, "__name__", "")
        _check_signature(f, check_name)
        old = CHECKS.get(check_name)
        if old is not None and old is not f and not replace and not _same_definition(old, f):
            raise ConfigError(
                f"a check named {check_name!r} is already registered ({_origin(old)}); "
                "choose another name (register_check(fn, name=...)) or pass replace=True"
            )
        CHECKS[check_name] = f
        return f

    return add if fn is None else add(fn)


def _same_definition(old: Any, new: Any) -> bool:
    """Whether ``new`` is ``old`` defined again (a module or notebook cell run twice)."""
    origin = _origin(new)
    return _origin(old) == origin and "<lambda>" not in origin


def _origin(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_signature(fn: Any, name: str) -> None:
    """Refuse what cannot be called as a check, before any rubric meets it."""
    if not callable(fn):
        raise ConfigError(f"register_check: expected a function, got {type(fn).__name__}")
    if not _NAME.match(name):
        raise ConfigError(
            f"register_check: {name!r} is not a check name (letters, digits and _, not starting with a digit, at most 64); "
            "give one with register_check(fn, name='my_check')"
        )
    if inspect.iscoroutinefunction(fn):
        raise ConfigError(f"check {name!r} is async; checks are plain functions (for a model's judgement use a critic)")
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigError(f"check {name!r}: its signature cannot be read ({type(exc).__name__}: {exc})") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_rest = any(p.kind is p.VAR_POSITIONAL for p in params)
    if len(positional) < 2 and not takes_rest:
        raise ConfigError(f"check {name!r} takes {len(positional)} positional parameter(s); a check is fn(task, episode[, env], *, params...)")
    required = [p.name for p in positional[3:] if p.default is p.empty]
    if required:
        raise ConfigError(f"check {name!r}: positional parameter(s) {required} after (task, episode, env); make params keyword-only (after *)")
    for p in params:
        if p.kind is p.KEYWORD_ONLY and p.name not in hints:
            raise ConfigError(f"check {name!r}: param {p.name!r} has no type hint; params are validated from their hints (write {p.name}: int = 3)")


@functools.cache
def _takes_env(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a third positional argument (the env)."""
    params = inspect.signature(fn).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params)


def params_model(name: str) -> type[BaseModel]:
    """A pydantic model of the keyword-only params of check ``name``."""
    return _params_model(get_check(name), name)


@functools.cache
def _params_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    # Cached per function (not per name): a name registered again gets its new params.
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            fields[p.name] = (hints[p.name], ... if p.default is p.empty else p.default)
    return create_model(f"{name}_params", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def get_check(name: str) -> CheckFn:
    """The check called ``name``.

    Raises:
        ConfigError: no such check (with the closest names).
    """
    try:
        return CHECKS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a hand-built mapping
        raise ConfigError(
            f"unknown check {name!r}.{did_you_mean(str(name), CHECKS)} Known checks: {', '.join(CHECKS)}. "
            "A custom check must be registered (toolgym.register_check) before the rubric loads."
        ) from None


def validate_params(name: str, params: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """``params`` validated against the signature of check ``name``.

    Raises:
        ConfigError: an unknown, missing or mistyped param; the message names ``where.<param>``.
    """
    model = params_model(name)
    try:
        validated = model.model_validate(params)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"])
            hint = did_you_mean(str(err["loc"][0]), model.model_fields) if err["type"] == "extra_forbidden" else ""
            problems.append(f"{where}.{field}: {err['msg'].rstrip('.')}.{hint}")
        expected = ", ".join(model.model_fields) or "no params"
        raise ConfigError(f"check {name!r}: " + " ".join(problems) + f" Its params: {expected}.") from None
    return {k: getattr(validated, k) for k in params}


def run_check(name: str, task: Task, episode: Episode, env: Any = None, params: dict[str, Any] | None = None) -> float | None:
    """Run check ``name`` and validate what it returns (a bool counts as 0 or 1).

    Raises:
        ValueError: the check returned something other than None, a bool or a number in [0, 1].
        Exception: whatever the check raised (the scorer makes it unscorable, never 0).
    """
    fn = get_check(name)
    value = fn(task, episode, env, **(params or {})) if _takes_env(fn) else fn(task, episode, **(params or {}))
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        raise ValueError(f"check {name!r} returned {shown}; a check returns None or a number in [0, 1]")
    return float(value)
