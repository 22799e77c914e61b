"""Hostile rubric files and judge answers: refused at load naming the field, or unscorable with a reason."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.rubrics import RubricError, load_rubric, rubric_from_dict
from toolgym.rubrics.critics.parse import parse_pointwise

BASE = {
    "name": "demo",
    "criteria": [
        {"id": "state", "description": "d", "weight": 2, "source": {"type": "check", "check": "final_state_matches_gold"}},
        {"id": "tone", "description": "d", "scale": {"low": 1, "high": 5}, "source": {"type": "critic", "critic": "judge"}},
    ],
    "penalties": [{"id": "long", "kind": "token_budget", "limit": 100, "per_unit": 0.01}],
}
# (path into BASE, field name the message must show)
SPOTS = [
    (("criteria", 0, "weight"), "criteria[0] (id 'state').weight"),
    (("criteria", 1, "scale", "high"), "criteria[1] (id 'tone').scale.high"),
    (("penalties", 0, "per_unit"), "penalties[0] (id 'long').per_unit"),
    (("penalties", 0, "limit"), "penalties[0] (id 'long').limit"),
]
NON_FINITE = st.sampled_from([".inf", "-.inf", ".nan", "1e400", "-1e999"])


@settings(max_examples=40, deadline=None)
@given(spot=st.sampled_from(SPOTS), token=NON_FINITE)
def test_non_finite_numbers_are_refused_at_load_naming_the_field(tmp_path_factory, spot, token):
    (path, label), text = spot, yaml.safe_dump(BASE)
    data = yaml.safe_load(text)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__X__"
    file = tmp_path_factory.mktemp("r") / "rubric.yaml"
    file.write_text(yaml.safe_dump(data).replace("__X__", token))
    with pytest.raises(RubricError) as err:
        load_rubric(file)
    assert label in str(err.value) and str(file) in str(err.value)


@settings(max_examples=40, deadline=None)
@given(spot=st.sampled_from(SPOTS), token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-2E999"]), indent=st.sampled_from([None, 1, 4]))
def test_non_finite_numbers_in_json_rubrics_name_the_field_line_and_column(tmp_path_factory, spot, token, indent):
    (path, label) = spot
    data = json.loads(json.dumps(BASE))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__X__"
    text = json.dumps(data, indent=indent)
    offset = text.index('"__X__"')
    line, column = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    file = tmp_path_factory.mktemp("r") / "rubric.json"
    file.write_text(text.replace('"__X__"', token))
    with pytest.raises(RubricError) as err:
        load_rubric(file)
    assert str(err.value).startswith(f"{file}: line {line}, column {column}: {label}: "), str(err.value)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"name": ' + "9" * 6000 + "}", '{"name": NaN}'])
def test_hostile_json_rubric_files_are_rubric_errors(tmp_path, text):
    file = tmp_path / "r.json"
    file.write_text(text)
    with pytest.raises(RubricError, match="r.json"):
        load_rubric(file)


def test_deep_yaml_is_a_rubric_error(tmp_path):
    file = tmp_path / "r.yaml"
    file.write_text("a: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(RubricError, match="r.yaml"):
        load_rubric(file)


def test_a_finite_rubric_still_loads():
    assert rubric_from_dict(json.loads(json.dumps(BASE))).name == "demo"


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.booleans(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2), st.just({"v": 1})))
def test_judge_scores_that_are_not_numbers_are_unscorable_with_a_reason(score):
    criteria = rubric_from_dict(BASE).criteria
    verdicts = parse_pointwise(json.dumps({"criteria": [{"id": "tone", "score": score}, {"id": "state", "score": 1}]}), criteria)
    tone = verdicts["tone"]
    assert tone.unscorable is not None and "must be a JSON number" in tone.unscorable.message
    assert verdicts["state"].unscorable is None


# ---------------------------------------------------------------- YAML aliases: shared, endless, exploding

ALIAS_SPOTS = [
    (("description",), "description"),
    (("criteria", 0, "families"), "criteria[0] (id 'state').families"),
    (("criteria", 0, "source", "params"), "criteria[0] (id 'state').source.params"),
    (("criteria", 1, "scale", "labels"), "criteria[1] (id 'tone').scale.labels"),
    (("penalties", 0, "limit"), "penalties[0] (id 'long').limit"),
]


def rubric_text_with(path, flow: str) -> str:
    """BASE as YAML with the value at ``path`` replaced by the flow-style YAML ``flow``."""
    data = json.loads(json.dumps(BASE))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "__X__"
    return yaml.safe_dump(data, sort_keys=False).replace("__X__", flow)


def bomb(fan_out: int, levels: int) -> str:
    """``[&a3 [&a2 [&a1 [x, x], *a1], *a2], *a3]``-style: each level repeats the one below."""
    text = "[" + ", ".join(["lol"] * fan_out) + "]"
    for level in range(1, levels + 1):
        text = f"[&a{level} {text}" + f", *a{level}" * (fan_out - 1) + "]"
    return text


@settings(max_examples=30, deadline=None)
@given(spot=st.sampled_from(ALIAS_SPOTS), fan_out=st.integers(2, 9), extra=st.integers(0, 12))
def test_an_alias_bomb_anywhere_is_refused_quickly_naming_the_field(tmp_path_factory, spot, fan_out, extra):
    levels = next(n for n in range(1, 40) if fan_out ** (n + 1) > 200_000) + extra  # 200k to 10^20 values
    file = tmp_path_factory.mktemp("r") / "rubric.yaml"
    file.write_text(rubric_text_with(spot[0], bomb(fan_out, levels)))
    start = time.perf_counter()
    with pytest.raises(RubricError) as err:
        load_rubric(file)
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert message.startswith(f"{file}: {spot[1]}") and "values once YAML aliases are expanded" in message, message


@settings(max_examples=20, deadline=None)
@given(spot=st.sampled_from(ALIAS_SPOTS), flow=st.sampled_from(["&c [1, *c]", "&c {a: *c}", "&c [[[*c]]]", "&c {a: [b, {c: *c}]}"]))
def test_an_alias_inside_its_own_anchor_is_refused_naming_the_field(tmp_path_factory, spot, flow):
    file = tmp_path_factory.mktemp("r") / "rubric.yaml"
    file.write_text(rubric_text_with(spot[0], flow))
    with pytest.raises(RubricError) as err:
        load_rubric(file)
    message = str(err.value)
    assert message.startswith(f"{file}: {spot[1]}") and "holds itself (a YAML alias inside its own anchor)" in message, message


@settings(max_examples=25, deadline=None)
@given(copies=st.integers(2, 5), bad=st.booleans())
def test_a_criterion_shared_through_an_alias_loads_like_its_copies_and_each_use_is_named(tmp_path_factory, copies, bad):
    weight = -1 if bad else 2
    criterion = f"{{id: c, description: d, weight: {weight}, source: {{type: check, check: final_state_matches_gold}}}}"
    text = "name: r\ncriteria:\n  - &c " + criterion + "\n" + "  - *c\n" * (copies - 1)
    file = tmp_path_factory.mktemp("r") / "rubric.yaml"
    file.write_text(text)
    with pytest.raises(RubricError) as err:
        load_rubric(file)
    message = str(err.value)
    if bad:  # every use of the shared criterion is named, by its own place in the list
        assert all(f"criteria[{i}] (id 'c').weight: Input should be greater than or equal to 0" in message for i in range(copies))
    else:
        assert "criterion id 'c' appears twice" in message
