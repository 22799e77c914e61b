"""One canonical encoding for every value that crosses a boundary (world hashes, fault seeds,
episode files): deterministic, lossless for what JSON cannot say, and total.

JSON has no NaN or infinity, no lone surrogates in UTF-8, no non-string keys, no objects and
no cycles. ``encode`` turns any supported Python value into plain JSON data that says them
all with small tagged objects, and ``decode`` reverses the tags:

========================  =====================================================
value                     encoded as
========================  =====================================================
``nan``, ``±inf``         ``{"$float": "nan" | "inf" | "-inf"}``
int of over 4,300 digits  ``{"$int": "<hex>"}`` (past CPython's default text limit)
dict with int keys        as ``json.dumps`` writes it (keys as text, numeric order)
dict with other keys      ``{"$map": [[key, value], ...]}`` sorted by encoded key
set, frozenset            sorted list (by canonical JSON of each element)
tuple                     list
pydantic model            ``model_dump(mode="json")``, then encoded
enum member               its value
dataclass, plain object,  ``{"$object": "module.Qualname", "state": {attr: value}}``
``__slots__`` object      (every instance attribute, private ones included)
datetime, date, time      ISO 8601 string
``Decimal``               ``{"$decimal": "1.10"}``
bytes                     ``{"$bytes": "<hex>"}``
a cycle back to an        ``{"$ref": [path of the object from the root]}``
object being encoded
random.Random             ``{"$object": "random.Random", "state": <getstate()>}``
numpy values              ``tolist()``
========================  =====================================================

A user dict whose only key is one of the tags is wrapped as ``{"$dict": {...}}`` so decoding
never mistakes data for a tag. Lone surrogates stay in strings; ``canonical_bytes`` encodes
them with ``surrogatepass`` (hashing never fails) and ``dumps(..., ascii=True)`` escapes them
(files stay valid UTF-8). Values that need none of this encode exactly as
``json.dumps(value, sort_keys=True)``, so digests of ordinary JSON worlds do not change.

>>> encode({"x": float("nan"), 1: "\\ud800"})
{'$map': [['x', {'$float': 'nan'}], [1, '\\ud800']]}
>>> decode(encode({"x": float("inf")}))
{'x': inf}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import random
import sys
from typing import Any

from pydantic import BaseModel

TAGS = ("$float", "$int", "$map", "$object", "$decimal", "$bytes", "$ref", "$dict")
MAX_DEPTH = 400
"""Nesting deeper than this is refused (``CanonicalError``) rather than overflowing the stack."""

_SCALARS = (str, int, bool, type(None))
_INT_DIGITS = 4300
"""CPython's default ``sys.get_int_max_str_digits()``. A fixed bound, not the process's setting,
so an int encodes the same way in every process."""
_BIG_INT = 10**_INT_DIGITS  # ints at least this large have no JSON text within the default limit


class CanonicalError(TypeError):
    """A value has no canonical form (an open file, a lock, a function...), or nests too deep."""


# --------------------------------------------------------------------------- encoding


def encode(value: Any) -> Any:
    """``value`` as plain JSON data (str-keyed dicts, lists, str, finite numbers, bool, None).

    Raises:
        CanonicalError: naming the path and type of the first value that has no canonical form.
    """
    return _Encoder().walk(value, ())


class _Encoder:
    def __init__(self) -> None:
        self.active: dict[int, tuple[Any, ...]] = {}  # id -> path, for objects on the current path

    def walk(self, value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, _SCALARS):
            if isinstance(value, int) and not -_BIG_INT < value < _BIG_INT:
                return {"$int": hex(value)}
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": _float_name(value)}
        if len(path) > MAX_DEPTH:
            raise CanonicalError(f"value nests deeper than {MAX_DEPTH} levels at {_where(path)}")
        key = id(value)
        if key in self.active:  # a cycle: point back at where the object first appeared
            return {"$ref": list(self.active[key])}
        self.active[key] = path
        try:
            return self._container(value, path)
        finally:
            del self.active[key]

    def _container(self, value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return self._dict(value, path)
        if isinstance(value, (list, tuple)):
            return [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, BaseModel):
            return self.walk(value.model_dump(mode="json"), path)
        if isinstance(value, enum.Enum):
            return self.walk(value.value, path)
        if isinstance(value, (set, frozenset)):
            items = [self.walk(v, (*path, "*")) for v in value]
            return sorted(items, key=_sort_key)
        special = _special(value)
        if special is not None:
            return special
        if isinstance(value, random.Random):
            return {"$object": "random.Random", "state": self.walk(value.getstate(), (*path, "state"))}
        if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
            return self.walk(value.tolist(), path)
        return self._object(value, path)

    def _dict(self, value: dict[Any, Any], path: tuple[Any, ...]) -> Any:
        if all(type(k) is str for k in value):
            out = {k: self.walk(value[k], (*path, k)) for k in sorted(value)}
            return {"$dict": out} if len(out) == 1 and next(iter(out)) in TAGS else out
        if all(type(k) is int and -_BIG_INT < k < _BIG_INT for k in value):  # as json.dumps writes them: numeric order, text keys
            return {str(k): self.walk(value[k], (*path, k)) for k in sorted(value)}
        pairs = [[self.walk(k, (*path, "<key>")), self.walk(v, (*path, _label(k)))] for k, v in value.items()]
        return {"$map": sorted(pairs, key=lambda kv: _sort_key(kv[0]))}

    def _object(self, value: Any, path: tuple[Any, ...]) -> Any:
        state = _instance_state(value)
        if state is None:
            raise CanonicalError(
                f"{_where(path)} holds a {type(value).__module__}.{type(value).__qualname__}, which has no "
                "canonical form (no __dict__ or __slots__); keep it out of the state or give the "
                "environment a state_fn that returns plain data"
            )
        encoded = {name: self.walk(v, (*path, name)) for name, v in sorted(state.items())}
        return {"$object": f"{type(value).__module__}.{type(value).__qualname__}", "state": encoded}


def _special(value: Any) -> Any:
    """Scalars with a fixed textual form (dates, decimals, bytes), or None."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return {"$object": "datetime.timedelta", "state": {"seconds": value.total_seconds()}}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    return None


def _instance_state(value: Any) -> dict[str, Any] | None:
    """Every attribute of an instance: ``__dict__`` plus any ``__slots__`` along the MRO."""
    if callable(value) and not dataclasses.is_dataclass(value):
        return None  # functions, methods, classes: behaviour, not state
    state: dict[str, Any] = {}
    found = False
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            found = True
            if hasattr(value, slot):
                state[slot] = getattr(value, slot)
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        found = True
        state.update(attrs)
    return state if found else None


def _float_name(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _label(key: Any) -> Any:
    return key if isinstance(key, (str, int)) else repr(key)[:40]


def _where(path: tuple[Any, ...]) -> str:
    return "state" + "".join(f"[{p!r}]" for p in path[:12]) + ("..." if len(path) > 12 else "")


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- decoding


def decode(data: Any) -> Any:
    """Inverse of ``encode`` for the data tags (floats, maps, decimals, bytes, wrapped dicts).

    Objects (``$object``) and cycles (``$ref``) stay in their encoded form: rebuilding
    arbitrary classes from data is the owner's job (``restore`` keeps live objects instead).
    """
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        (tag, inner), = data.items()
        if tag == "$float" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag == "$int" and isinstance(inner, str):
            return int(inner, 16)
        if tag == "$map" and isinstance(inner, list):
            return {_hashable(decode(k)): decode(v) for k, v in inner}
        if tag == "$decimal":
            return decimal.Decimal(inner)
        if tag == "$bytes":
            return bytes.fromhex(inner)
        if tag == "$dict" and isinstance(inner, dict):
            return {k: decode(v) for k, v in inner.items()}
    return {k: decode(v) for k, v in data.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    return key


# --------------------------------------------------------------------------- text, bytes, hashes


def _fast_default(value: Any) -> Any:
    # Only what encodes identically on both paths; everything else takes the full walk.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum) and isinstance(value.value, (str, int)):
        return value.value
    raise TypeError("needs the full canonical walk")


def dumps(value: Any, *, ascii: bool = False) -> str:
    """Canonical JSON text: sorted keys, no spaces, tags where plain JSON has no form.

    Args:
        value: Anything ``encode`` accepts.
        ascii: Escape every non-ASCII character (lone surrogates included), so the text can be
            written to any UTF-8 file; the default keeps the text readable.

    Raises:
        CanonicalError: ``value`` holds something with no canonical form.
    """
    try:  # fast path: ordinary JSON data, hashed exactly as json.dumps always did
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii, allow_nan=False, default=_fast_default)
    except (TypeError, ValueError, RecursionError):
        text = None
    # '{"$' can only be an object whose first key looks like a tag (quotes in strings are escaped):
    # such data takes the walk, which wraps it, so data never reads back as a tag. A process that
    # raised the int digit limit may print an int the walk would tag: long text takes the walk too.
    if text is None or '{"$' in text or (len(text) > _INT_DIGITS and not 0 < sys.get_int_max_str_digits() <= _INT_DIGITS):
        text = json.dumps(encode(value), separators=(",", ":"), ensure_ascii=ascii, allow_nan=False)
    return text


def canonical_bytes(value: Any) -> bytes:
    """UTF-8 bytes of ``dumps(value)``; lone surrogates pass through, so hashing never fails."""
    return dumps(value).encode("utf-8", "surrogatepass")


def digest(value: Any) -> str:
    """A 32-hex-digit SHA-256 prefix of ``canonical_bytes(value)``."""
    return hashlib.sha256(canonical_bytes(value)).hexdigest()[:32]


def seed_from(*parts: Any) -> int:
    """A stable unsigned 64-bit seed from any canonical parts: toolgym's one seed derivation.

    The seed is a hash of ``canonical_bytes(list(parts))``, so it is the same in every process
    and on every machine, and parts that encode differently give different seeds: ``("a/b",)``
    and ``("a", "b")``, ``1``, ``"1"``, ``1.0`` and ``True``, NaN, lone surrogates, huge ints.
    Values the encoding equates (a tuple and a list, ``{1: x}`` and ``{"1": x}``) seed alike.
    Callers that need fewer bits say so where they call: ``>> 1`` for a signed int64,
    ``>> 33`` for 31 bits.

    >>> seed_from("a/b") != seed_from("a", "b")
    True

    Raises:
        CanonicalError: a part has no canonical form.
    """
    return int.from_bytes(hashlib.blake2b(canonical_bytes(list(parts)), digest_size=8).digest(), "big")
