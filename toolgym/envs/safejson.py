"""One JSON loader for everything that reads JSON from outside (models, endpoints, files).

``json.loads`` only promises ``JSONDecodeError`` for bad syntax: deep nesting raises
``RecursionError``, a 5,000-digit integer ``ValueError`` (CPython's digit limit), ``1e400``
silently becomes ``inf`` and ``NaN`` is accepted although JSON has no such thing. ``loads``
here states its limits and reports every violation as ``JsonLimitError``, a subclass of
``json.JSONDecodeError``, so each reader's existing handler maps it to its own typed error
(an error observation, a ``TaskFileError`` with file and line, an HTTP 400, a
``simulator_error``...).

>>> loads('{"a": [1, 2.5]}')
{'a': [1, 2.5]}
>>> loads("[" * 200 + "]" * 200)
Traceback (most recent call last):
...
toolgym.envs.safejson.JsonLimitError: JSON nests deeper than 100 levels: line 1 column 101 (char 100)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JsonLimits:
    """What ``loads`` accepts.

    Attributes:
        max_chars: Longest text accepted.
        max_depth: Deepest nesting of arrays and objects.
        max_digits: Most digits in one integer (CPython refuses more than 4,300 anyway).
        allow_nan: Accept ``NaN``/``Infinity`` literals (JSON has none; off by default).
    """

    max_chars: int = 8_000_000
    max_depth: int = 100
    max_digits: int = 1_000
    allow_nan: bool = False


DEFAULT_LIMITS = JsonLimits()
"""Limits for model output, endpoint responses and simulator answers."""
FILE_LIMITS = JsonLimits(max_chars=64_000_000, max_depth=200)
"""Limits for one line or document of a task, rubric or episode file."""

# A string token (escapes included) or one bracket: scanning these skips brackets inside strings.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class JsonLimitError(json.JSONDecodeError):
    """The text breaks one of ``JsonLimits`` (or is not JSON); ``msg`` names the limit."""


class _Refused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def loads(text: str | bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON within ``limits``.

    Raises:
        JsonLimitError: (a ``json.JSONDecodeError``) the text is too long, nests too deep, holds
            an over-long integer, a number that overflows to infinity, a NaN/Infinity literal,
            or is not JSON at all.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonLimitError(f"not UTF-8 ({exc.reason})", "", 0) from None
    if not isinstance(text, str):
        raise JsonLimitError(f"expected JSON text, got {type(text).__name__}", "", 0)
    if len(text) <= limits.max_digits and len(text) <= limits.max_chars:
        value = _small(text, limits)
        if value is not _NO_VALUE:
            return value
    if len(text) > limits.max_chars:
        raise JsonLimitError(f"JSON text longer than {limits.max_chars:,} characters ({len(text):,})", "", 0)
    _check_depth(text, limits.max_depth)
    try:
        return _decoder(limits).decode(text)
    except _Refused as exc:
        raise JsonLimitError(exc.message, text, 0) from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(exc.msg, exc.doc, exc.pos) from None
    except (RecursionError, ValueError) as exc:  # belt and braces: the checks above should prevent these
        raise JsonLimitError(f"unreadable JSON ({type(exc).__name__})", text, 0) from None


_NO_VALUE = object()
_JSON_SPACE = " \t\n\r"


def _small(text: str, limits: JsonLimits) -> Any:
    """The fast path for text no longer than ``max_digits``: ``_NO_VALUE`` when it cannot decide.

    Such text cannot hold an integer with too many digits, so integers are parsed by the C
    scanner itself instead of a Python callback per integer; depth is counted only when the
    text has more characters than ``max_depth``. Floats keep their overflow check, and any
    refusal or syntax error goes to the full path, which reports it with its exact position.
    """
    if len(text) > limits.max_depth:
        _check_depth(text, limits.max_depth)
    body = text.strip(_JSON_SPACE)
    try:
        value, end = _scanners(limits)[1].raw_decode(body)
    except (_Refused, RecursionError, ValueError):  # JSONDecodeError is a ValueError
        return _NO_VALUE
    return value if end == len(body) else _NO_VALUE


def raw_decode(text: str, start: int, limits: JsonLimits = DEFAULT_LIMITS) -> tuple[Any, int]:
    """``json.JSONDecoder.raw_decode`` within ``limits``: the value starting at ``start`` and its end."""
    if len(text) > limits.max_chars:
        raise JsonLimitError(f"JSON text longer than {limits.max_chars:,} characters ({len(text):,})", "", 0)
    _check_depth(text, limits.max_depth, start)
    try:
        return _decoder(limits).raw_decode(text, start)
    except _Refused as exc:
        raise JsonLimitError(exc.message, text, start) from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(exc.msg, exc.doc, exc.pos) from None
    except (RecursionError, ValueError) as exc:
        raise JsonLimitError(f"unreadable JSON ({type(exc).__name__})", text, start) from None


def depth_of(value: Any, limit: int) -> int:
    """Nesting depth of parsed data, counting no further than ``limit + 1`` (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list, tuple)):
            depth += 1
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth) for child in children)
    return deepest


def _check_depth(text: str, max_depth: int, start: int = 0) -> None:
    # Fast exit: fewer openers than the limit cannot nest deeper than it.
    if text.count("[", start) + text.count("{", start) <= max_depth:
        return
    depth = 0
    for match in _TOKENS.finditer(text, start):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonLimitError(f"JSON nests deeper than {max_depth} levels", text, match.start())
        elif token in "]}":
            depth -= 1


_SCANNERS: dict[JsonLimits, tuple[json.JSONDecoder, json.JSONDecoder]] = {}


def _scanners(limits: JsonLimits) -> tuple[json.JSONDecoder, json.JSONDecoder]:
    """(full decoder, small-text decoder) for ``limits``, built once per distinct limits."""
    if limits is DEFAULT_LIMITS:  # the common case skips hashing the limits
        return _DEFAULT_PAIR
    pair = _SCANNERS.get(limits)
    if pair is None:
        pair = _SCANNERS[limits] = _build(limits)
    return pair


def _build(limits: JsonLimits) -> tuple[json.JSONDecoder, json.JSONDecoder]:
    constant = float if limits.allow_nan else _refuse_constant
    full = json.JSONDecoder(parse_int=_int_parser(limits.max_digits), parse_float=_float_parser, parse_constant=constant)
    small = json.JSONDecoder(parse_float=_float_parser, parse_constant=constant)  # int: C's own, no callback
    return full, small


def _decoder(limits: JsonLimits) -> json.JSONDecoder:
    return _scanners(limits)[0]


def _int_parser(max_digits: int) -> Any:
    def parse_int(token: str) -> int:
        if len(token) - token.startswith("-") > max_digits:  # the sign is not a digit
            raise _Refused(f"integer with {len(token.lstrip('-')):,} digits (at most {max_digits:,})")
        return int(token)

    return parse_int


def _float_parser(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _Refused(f"number {token[:40]} is too large for a 64-bit float")
    return value


def _refuse_constant(token: str) -> float:
    raise _Refused(f"{token} is not JSON (use a number or null)")


_DEFAULT_PAIR = _build(DEFAULT_LIMITS)
