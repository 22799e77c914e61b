import json

import pytest

from toolgym.rubrics import CheckSource, Rubric, RubricError, load_rubric, rubric_from_dict

GOOD = """
name: demo
criteria:
  - id: state
    description: The world ends as gold leaves it.
    weight: 2
    source: {type: check, check: final_state_matches_gold}
  - id: calls
    description: Converted with the tool.
    source: {type: check, check: tool_called, params: {name: convert, arguments: {to_unit: {$in: [km, m]}}}}
  - id: tone
    description: Polite.
    scale: {low: 1, high: 5}
    source: {type: critic, critic: judge}
penalties:
  - {id: long, kind: token_budget, limit: 100, per_unit: 0.01}
"""


def write(tmp_path, text, name="rubric.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_json_load_to_the_same_rubric(tmp_path):
    from_yaml = load_rubric(write(tmp_path, GOOD))
    from_json = load_rubric(write(tmp_path, json.dumps(from_yaml.model_dump(mode="json")), "rubric.json"))
    assert from_yaml == from_json
    assert isinstance(from_yaml.criteria[1].source, CheckSource)
    assert from_yaml.critic_names() == {"judge"}
    assert [c.id for c in from_yaml.verifiable().criteria] == ["state", "calls"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("check: final_state_matches_gold", "check: final_state_matchs_gold",
         r"rubric\.yaml: criteria\[0\] \(id 'state'\)\.source\.check: unknown check 'final_state_matchs_gold'\. Did you mean 'final_state_matches_gold'"),
        ("params: {name: convert,", "params: {nme: convert,",
         r"criteria\[1\] \(id 'calls'\)\.source\.params: check 'tool_called': params\.name: Field required\. params\.nme: .*Did you mean 'name'"),
        ("{$in: [km, m]}", "{$inn: [km, m]}", r"criteria\[1\] \(id 'calls'\)\.source\.params: .*unknown matcher operator '\$inn'"),
        ("weight: 2", "weight: -2", r"criteria\[0\] \(id 'state'\)\.weight: Input should be greater than or equal to 0"),
        ("weight: 2", "wieght: 2", r"criteria\[0\] \(id 'state'\)\.wieght: unknown field"),
        ("type: critic", "type: critc", r"criteria\[2\] \(id 'tone'\)\.source: .*'critc'.*write source: \{type: check"),
        ("scale: {low: 1, high: 5}", "scale: {low: 5, high: 1}", r"criteria\[2\] \(id 'tone'\)\.scale: scale\.high \(1\.0\) must be greater"),
        ("kind: token_budget", "kind: tokens", r"penalties\[0\] \(id 'long'\)\.kind: Input should be 'token_budget'"),
        ("id: calls", "id: state", r"criteria: criterion id 'state' appears twice"),
        ("name: demo\n", "", r"rubric\.yaml: name: required field is missing"),
    ],
)
def test_errors_name_the_file_the_field_and_the_fix(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(RubricError, match=message):
        load_rubric(write(tmp_path, GOOD.replace(old, new, 1)))


def test_model_level_rules():
    base = {"id": "x", "description": "d", "source": {"type": "check", "check": "well_formed_call_rate"}}
    with pytest.raises(RubricError, match="checks score on \\[0, 1\\]; remove 'scale'"):
        rubric_from_dict({"name": "r", "criteria": [{**base, "scale": {"low": 1, "high": 5}}]})
    with pytest.raises(RubricError, match="kind 'task_specific' needs 'families'"):
        rubric_from_dict({"name": "r", "criteria": [{**base, "kind": "task_specific"}]})
    with pytest.raises(RubricError, match="a rubric is a mapping"):
        rubric_from_dict(["not", "a", "mapping"])


def test_file_level_errors(tmp_path):
    with pytest.raises(RubricError, match="no such rubric file"):
        load_rubric(tmp_path / "missing.yaml")
    with pytest.raises(RubricError, match=r"bad\.yaml: line 3, column 3: not valid YAML"):
        load_rubric(write(tmp_path, "name: x\ncriteria: [\n  - id: {\n", "bad.yaml"))
    with pytest.raises(RubricError, match=r"bad\.json: line 1, column \d+: not valid JSON"):
        load_rubric(write(tmp_path, "{name: x}", "bad.json"))
    with pytest.raises(RubricError, match="unknown rubric file type '.toml'"):
        load_rubric(write(tmp_path, "", "r.toml"))
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\ncriteria: []\n")
    with pytest.raises(RubricError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9"):
        load_rubric(tmp_path / "latin1.yaml")


def test_families_select_task_specific_criteria(task):
    rubric = Rubric.model_validate(
        {
            "name": "r",
            "criteria": [
                {"id": "all", "description": "d", "source": {"type": "check", "check": "well_formed_call_rate"}},
                {"id": "scale_only", "description": "d", "kind": "task_specific", "families": ["convert_scale"],
                 "source": {"type": "check", "check": "tool_called", "params": {"name": "calculate"}}},
                {"id": "sum_only", "description": "d", "kind": "task_specific", "families": ["sum_convert"],
                 "source": {"type": "check", "check": "tool_called", "params": {"name": "calculate"}}},
            ],
        }
    )
    assert [c.id for c in rubric.for_task(task)] == ["all", "scale_only"]
