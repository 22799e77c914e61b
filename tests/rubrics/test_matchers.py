import hashlib

import pytest

from toolgym.errors import ConfigError
from toolgym.rubrics.matchers import arguments_match, validate_spec, value_matches


def test_subset_ignores_other_keys_exact_does_not():
    args = {"value": 3.0, "from_unit": "mi", "to_unit": "km"}
    assert arguments_match(args, {"to_unit": "km"})
    assert not arguments_match(args, {"to_unit": "km"}, mode="exact")
    assert arguments_match(args, {"value": 3, "from_unit": "mi", "to_unit": "km"}, mode="exact")
    assert not arguments_match(args, {"to_unit": "m"})
    assert not arguments_match({"value": 3}, {"missing": 1})


def test_none_matches_anything_and_predicates_decide():
    assert arguments_match({"x": 1}, None)
    assert arguments_match({"x": 5}, lambda a: a["x"] > 4)
    assert not arguments_match({"x": 3}, lambda a: a["x"] > 4)


@pytest.mark.parametrize(
    ("actual", "spec", "expected"),
    [
        (3.0004, {"$approx": 3, "$tol": 0.001}, True),
        (3.01, {"$approx": 3, "$tol": 0.001}, False),
        (103.0, {"$approx": 100, "$rel": 0.05}, True),
        ("x", {"$approx": 1}, False),
        ("total_12", {"$regex": r"^total_\d+$"}, True),
        ("sum_12", {"$regex": r"^total_"}, False),
        ("km", {"$in": ["km", "m"]}, True),
        ("mi", {"$in": ["km", "m"]}, False),
        (5, {"$gt": 4, "$le": 5}, True),
        (6, {"$gt": 4, "$le": 5}, False),
        (True, {"$gt": 0}, False),
        ("anything", {"$any": True}, True),
        ("km", {"$not": "mi"}, True),
        ("mi", {"$not": "mi"}, False),
        ("hello", {"$sha256": hashlib.sha256(b"hello").hexdigest()}, True),
        ("hullo", {"$sha256": hashlib.sha256(b"hello").hexdigest()}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [1], False),
        ({"a": 1, "b": 2}, {"a": 1}, True),
    ],
)
def test_value_operators(actual, spec, expected):
    assert value_matches(actual, spec) is expected


def test_nested_exact_mode_is_exact_all_the_way_down():
    assert arguments_match({"o": {"a": 1, "b": 2}}, {"o": {"a": 1}})
    assert not arguments_match({"o": {"a": 1, "b": 2}}, {"o": {"a": 1}}, mode="exact")


def test_unknown_operator_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"args\.value: unknown matcher operator '\$aprox'\. Did you mean '\$approx'"):
        validate_spec({"value": {"$aprox": 3}}, "args")


def test_bad_regex_and_bad_approx_are_rejected():
    with pytest.raises(ConfigError, match=r"\$regex: invalid regular expression"):
        validate_spec({"name": {"$regex": "("}}, "args")
    with pytest.raises(ConfigError, match=r"\$approx: expected a number"):
        validate_spec({"value": {"$approx": "three"}}, "args")
