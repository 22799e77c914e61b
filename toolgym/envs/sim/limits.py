"""Limits on schemas that come from outside (MCP servers, synthesized tools, user specs).

A hostile or careless schema must not hang an environment: ``check_schema_shape`` refuses, when
the environment is built, schemas that nest too deep, are too large, point at ``$ref``s that do
not exist (or are not local), carry non-finite bounds, absurd sizes (``minItems: 1e8``), or a
``pattern`` that backtracks catastrophically on a probe. ``guarded`` gives a validator class
whose ``pattern`` checks run with a time limit, so a pattern that slipped through the probes
raises ``UnusableSchema`` (infrastructure, a ``simulator_error``) instead of hanging on the
model's input.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jsonschema
from jsonschema import validators

from toolgym.errors import EnvError

MAX_DEPTH = 64
"""Deepest nesting of a schema document (objects and arrays)."""
MAX_NODES = 20_000
"""Most objects and arrays in one schema document."""
MAX_SIZE = 1_000
"""Largest ``minItems``/``minProperties``; larger ones cannot be generated in bounded time."""
MAX_LENGTH = 100_000
"""Largest ``minLength``."""
PATTERN_TIMEOUT_S = 0.05
"""Time one ``pattern`` match may take, at import (on probes) and at validation."""
# Short probes catch exponential backtracking, long ones the polynomial kind.
_PROBES = tuple(text * n + "!" for n in (28, 3000) for text in ("a", "0", " ", "ab", "aA0_-. "))
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


class UnusableSchema(EnvError):
    """A schema that passed the import checks still could not be used (a slow pattern)."""


def check_schema_shape(schema: Any, where: str) -> None:
    """Refuse schemas that cannot be used in bounded time and memory.

    Raises:
        SchemaError: naming ``where``, the place in the schema and the limit.
    """
    from toolgym.envs.sim.schema import SchemaError  # the error type lives with compile_schema

    nodes = 0
    stack: list[tuple[Any, tuple[str, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        nodes += 1
        if len(path) > MAX_DEPTH or nodes > MAX_NODES:
            what = f"nests deeper than {MAX_DEPTH} levels" if len(path) > MAX_DEPTH else f"has more than {MAX_NODES:,} parts"
            raise SchemaError(f"{where}: the schema {what} (at '{_at(path)}'); simplify it")
        if isinstance(node, dict):
            problem = _node_problem(node, schema)
            if problem:
                raise SchemaError(f"{where}: at '{_at(path)}': {problem}")
            stack.extend((child, (*path, str(key))) for key, child in node.items())
        else:
            stack.extend((child, (*path, str(i))) for i, child in enumerate(node))


def _node_problem(node: dict[str, Any], root: Any) -> str | None:
    for key in _NUMERIC:
        value = node.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value}; bounds must be finite numbers (leave the keyword out for no bound)"
    step = node.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and 0 < step < 1e-9:
        return f"multipleOf {step:g} is too small to generate or check reliably; use at least 1e-9"
    for key, cap in (("minItems", MAX_SIZE), ("minProperties", MAX_SIZE), ("minLength", MAX_LENGTH)):
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            return f"{key} {value:g} exceeds {cap:,}; no tool output needs that many"
    ref = node.get("$ref")
    if isinstance(ref, str):
        problem = _ref_problem(ref, root)
        if problem:
            return problem
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        return _pattern_problem(pattern)
    return None


def _ref_problem(ref: str, root: Any) -> str | None:
    if not ref.startswith("#"):
        return f"$ref {ref[:80]!r} is not local; inline it or put it under '$defs'"
    target = root
    for part in ref[1:].strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return f"$ref {ref[:80]!r} points at nothing in the document"
    return None


def _pattern_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"pattern {pattern[:60]!r} is not a valid regular expression ({exc})"
    engine = _timed_engine()
    if engine is None:
        return None
    for probe in _PROBES:
        try:
            engine.search(pattern, probe, timeout=PATTERN_TIMEOUT_S)
        except TimeoutError:
            return (f"pattern {pattern[:60]!r} backtracks catastrophically (over {PATTERN_TIMEOUT_S:g}s on a "
                    f"{len(probe)}-character probe); rewrite it without nested quantifiers")
        except Exception:  # syntax the second engine reads differently: leave it to `re`
            return None
    return None


def _timed_engine() -> Any:
    """The ``regex`` module (matching with a timeout), or None where it is not installed."""
    try:
        import regex
    except ImportError:
        return None
    return regex


def _pattern_check(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """jsonschema's ``pattern`` keyword, with a time limit on each match."""
    if not validator.is_type(instance, "string"):
        return
    engine = _timed_engine()
    try:
        found = engine.search(pattern, instance, timeout=PATTERN_TIMEOUT_S) if engine else re.search(pattern, instance[:10_000])
    except TimeoutError:
        raise UnusableSchema(f"pattern {pattern[:60]!r} took over {PATTERN_TIMEOUT_S:g}s on a {len(instance):,}-character value") from None
    if not found:
        yield jsonschema.ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


_GUARDED: dict[type, type] = {}


def guarded(cls: type) -> type:
    """``cls`` (a jsonschema validator class) with time-limited ``pattern`` matching."""
    if cls not in _GUARDED:
        _GUARDED[cls] = validators.extend(cls, {"pattern": _pattern_check})
    return _GUARDED[cls]


def _at(path: tuple[str, ...]) -> str:
    return ".".join(path[:16]) + ("..." if len(path) > 16 else "") or "(root)"

