"""Argument matchers for call checks: exact, subset, predicate, plus value operators.

In YAML a matcher is a mapping of expected arguments. A value is a literal, or a mapping of
operators whose keys start with ``$``:

    arguments: {to_unit: km, value: {$approx: 4.828, $tol: 0.001}, name: {$regex: "^total_"}}

In Python a matcher may also be a predicate, any callable ``(arguments) -> bool``.

>>> arguments_match({"value": 3.0001, "unit": "km"}, {"value": {"$approx": 3, "$tol": 0.01}})
True
>>> arguments_match({"value": 3, "unit": "km"}, {"value": 3}, mode="exact")
False
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any, Literal

from toolgym.errors import ConfigError, did_you_mean

MatchMode = Literal["exact", "subset"]
Predicate = Callable[[dict[str, Any]], bool]
ArgumentSpec = dict[str, Any] | Predicate | None
DEFAULT_TOL = 1e-9


def _approx(actual: Any, spec: dict[str, Any]) -> bool:
    if not _is_number(actual):
        return False
    return math.isclose(float(actual), float(spec["$approx"]), abs_tol=float(spec.get("$tol", DEFAULT_TOL)), rel_tol=float(spec.get("$rel", 0.0)))


_OPERATORS: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
    "$approx": _approx,
    "$regex": lambda a, s: isinstance(a, str) and re.search(s["$regex"], a) is not None,
    "$in": lambda a, s: any(value_matches(a, option, "exact") for option in s["$in"]),
    "$gt": lambda a, s: _is_number(a) and a > s["$gt"],
    "$ge": lambda a, s: _is_number(a) and a >= s["$ge"],
    "$lt": lambda a, s: _is_number(a) and a < s["$lt"],
    "$le": lambda a, s: _is_number(a) and a <= s["$le"],
    "$any": lambda a, s: bool(s["$any"]),
    "$not": lambda a, s: not value_matches(a, s["$not"], "subset"),
    "$sha256": lambda a, s: isinstance(a, str) and hashlib.sha256(a.encode()).hexdigest() == str(s["$sha256"]).lower(),
}
_MODIFIERS = {"$tol", "$rel"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_operator(spec: Any) -> bool:
    return isinstance(spec, dict) and bool(spec) and all(isinstance(k, str) and k.startswith("$") for k in spec)


def value_matches(actual: Any, expected: Any, mode: MatchMode = "subset") -> bool:
    """Whether one argument value satisfies its expectation (literal or operator mapping)."""
    if _is_operator(expected):
        return all(_OPERATORS[op](actual, expected) for op in expected if op not in _MODIFIERS)
    if isinstance(expected, dict):
        return isinstance(actual, dict) and arguments_match(actual, expected, mode)
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(value_matches(a, e, mode) for a, e in zip(actual, expected, strict=True))
        )
    if _is_number(expected) and _is_number(actual):
        # JSON does not keep 3 and 3.0 apart, so neither do we.
        return math.isclose(float(actual), float(expected), abs_tol=DEFAULT_TOL)
    return actual == expected


def arguments_match(actual: dict[str, Any], expected: ArgumentSpec, mode: MatchMode = "subset") -> bool:
    """Whether a call's arguments satisfy a matcher.

    Args:
        actual: The arguments the model sent.
        expected: None (anything matches), a predicate, or a mapping of expected values.
        mode: "subset": the listed keys must match; "exact": the keys must also be exactly these.
    """
    if expected is None:
        return True
    if callable(expected):
        return bool(expected(actual))
    if mode == "exact" and set(actual) != set(expected):
        return False
    return all(key in actual and value_matches(actual[key], value, mode) for key, value in expected.items())


def validate_spec(spec: Any, where: str) -> None:
    """Raise ``ConfigError`` naming ``where`` if an argument spec uses an unknown operator.

    Args:
        spec: The matcher as written in a rubric.
        where: The field path, for the message (for example "criteria[2].source.params.arguments").
    """
    if spec is None or callable(spec):
        return
    if isinstance(spec, dict):
        for key, value in spec.items():
            if isinstance(key, str) and key.startswith("$") and key not in _OPERATORS and key not in _MODIFIERS:
                known = ", ".join(sorted(_OPERATORS) + sorted(_MODIFIERS))
                raise ConfigError(f"{where}: unknown matcher operator {key!r}.{did_you_mean(key, list(_OPERATORS) + list(_MODIFIERS))} Known: {known}.")
            if key == "$approx" and not _is_number(value):
                raise ConfigError(f"{where}.$approx: expected a number, got {value!r}")
            if key == "$regex":
                try:
                    re.compile(value)
                except (re.error, TypeError) as exc:
                    raise ConfigError(f"{where}.$regex: invalid regular expression {value!r} ({exc})") from None
            validate_spec(value, f"{where}.{key}")
    elif isinstance(spec, list):
        for i, item in enumerate(spec):
            validate_spec(item, f"{where}[{i}]")
