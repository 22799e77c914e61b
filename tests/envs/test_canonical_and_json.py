"""The canonical encoder and the safe JSON loader, on generated hostile values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import canonical, safejson
from toolgym.envs.safejson import JsonLimitError, JsonLimits

# Text with lone surrogates and line separators; floats with NaN and infinities; mixed-type keys.
TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "\u2028", "\x00"])
SCALARS = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True, allow_infinity=True) | TEXT
KEYS = TEXT | st.integers(-5, 5) | st.tuples(st.integers(0, 3), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4) | st.frozensets(st.integers(0, 9), max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_every_value_has_a_digest_and_the_same_value_always_gets_the_same_one(value):
    first = canonical.digest(value)
    assert len(first) == 32 and canonical.digest(value) == first
    text = canonical.dumps(value, ascii=True)
    text.encode("utf-8")  # the ASCII form is always writable to a UTF-8 file
    json.loads(text)  # and is standard JSON (no NaN literals)


@settings(max_examples=150, deadline=None)
@given(st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20))
def test_decode_inverts_encode_for_data(value):
    back = canonical.decode(json.loads(canonical.dumps(value, ascii=True)))
    assert _same(back, value)


def _same(a, b) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


def test_ordinary_json_hashes_exactly_as_before():
    value = {"b": [1, 2.5, "é"], "a": {"z": None, "y": True}}
    legacy = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical.dumps(value) == legacy


def test_nan_and_null_and_distinct_tags_do_not_collide():
    assert canonical.digest({"x": float("nan")}) != canonical.digest({"x": None})
    assert canonical.digest({"$float": "nan"}) != canonical.digest(float("nan"))
    assert canonical.digest({1: "a"}) == canonical.digest({1: "a"})
    assert canonical.digest({1: "a", "1": "b"}) != canonical.digest({"1": "a", 1: "b"})


def test_values_without_a_canonical_form_are_named():
    with pytest.raises(canonical.CanonicalError, match=r"state\['f'\] holds a builtins.function"):
        canonical.encode({"f": lambda: 0})


# --------------------------------------------------------------------------- safe loader

HOSTILE_JSON = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(1, 9000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "[Infinity]", "-Infinity", "1e400", "-1e999", '"\\ud800"', "[1,]", "", "{", '{"a" 1}']),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(HOSTILE_JSON)
def test_loads_raises_only_json_decode_errors_within_its_limits(text):
    try:
        value = safejson.loads(text)
    except json.JSONDecodeError as exc:
        assert isinstance(exc, JsonLimitError)
        return
    assert safejson.depth_of(value, 200) <= safejson.DEFAULT_LIMITS.max_depth
    if isinstance(value, float):
        assert math.isfinite(value)


def test_each_limit_is_named():
    with pytest.raises(JsonLimitError, match="nests deeper than 100"):
        safejson.loads("[" * 101 + "]" * 101)
    with pytest.raises(JsonLimitError, match="5,000 digits"):
        safejson.loads("1" * 5000)
    with pytest.raises(JsonLimitError, match="too large for a 64-bit float"):
        safejson.loads("1e400")
    with pytest.raises(JsonLimitError, match="NaN is not JSON"):
        safejson.loads("[NaN]")
    with pytest.raises(JsonLimitError, match="longer than 10 characters"):
        safejson.loads('"' + "x" * 20 + '"', JsonLimits(max_chars=10))
    assert safejson.loads('"[[[[[[["', JsonLimits(max_depth=1)) == "[[[[[[["  # brackets in strings do not count


@settings(max_examples=60, deadline=None)
@given(digits=st.integers(1, 40), sign=st.sampled_from(["", "-"]))
def test_digit_limit_counts_digits_not_the_sign(digits, sign):
    """An integer of exactly ``max_digits`` digits loads, one more is refused, with or without a sign."""
    limits = safejson.JsonLimits(max_digits=20)
    text = sign + "9" * digits
    if digits <= 20:
        assert safejson.loads(text, limits) == int(text)
    else:
        with pytest.raises(safejson.JsonLimitError):
            safejson.loads(text, limits)
