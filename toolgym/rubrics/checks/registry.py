"""The named checks a rubric can refer to, and how their params are validated and run."""

from __future__ import annotations

import functools
import inspect
import math
import typing
from typing import Any

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
"""Every check by its name, which is also its metric name."""


@functools.cache
def params_model(name: str) -> type[BaseModel]:
    """A pydantic model of the keyword-only params of check ``name``."""
    fn = get_check(name)
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
    except KeyError:
        raise ConfigError(f"unknown check {name!r}.{did_you_mean(name, CHECKS)} Known checks: {', '.join(CHECKS)}.") from None


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
    """Run check ``name`` and validate what it returns.

    Raises:
        ValueError: the check returned something other than None or a number in [0, 1].
    """
    value = get_check(name)(task, episode, env, **(params or {}))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"check {name!r} returned {value!r}; a check returns None or a number in [0, 1]")
    return float(value)
