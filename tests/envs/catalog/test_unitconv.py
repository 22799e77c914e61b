from __future__ import annotations

import pytest

from toolgym.envs.catalog.unitconv.calc import evaluate
from toolgym.envs.catalog.unitconv.tasks import generate_task
from toolgym.envs.catalog.unitconv.units import convert_value, format_number
from toolgym.envs.types import ToolCall


def test_conversions():
    assert convert_value(1, "mi", "km") == 1.6093
    assert convert_value(100, "C", "F") == 212.0
    assert convert_value(0, "C", "K") == 273.15
    with pytest.raises(ValueError, match="cannot convert length"):
        convert_value(1, "km", "kg")
    with pytest.raises(ValueError, match="unknown unit 'parsec'"):
        convert_value(1, "parsec", "km")


@pytest.mark.parametrize("expr,value", [("1 + 2 * 3", 7.0), ("sqrt(16) / 3", 1.3333), ("-2 ** 2", -4.0), ("max(1, 5) % 3", 2.0)])
def test_calculator(expr, value):
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os')", "1 / 0", "2 ** 999", "x + 1", "1 +", "[1, 2]", "1" * 300])
def test_calculator_refuses(expr):
    with pytest.raises(ValueError):
        evaluate(expr)


def test_tasks_are_seeded_and_varied():
    assert generate_task(5) == generate_task(5)
    families = {generate_task(s).metadata["family"] for s in range(60)}
    assert families == {"convert_store", "convert_scale", "sum_convert", "recall_convert"}
    assert format_number(3.0) == "3" and format_number(2.50001) == "2.5"


def test_wrong_store_misses_the_expected_digest(unitconv):
    unitconv.reset(seed=1)
    slot = unitconv.task.gold_actions[-1].arguments["name"]
    text = unitconv.format.render_turn("", [ToolCall(id="1", name="store", arguments={"name": slot, "value": -1.0})])
    unitconv.step(text)
    assert unitconv.state_digest() != unitconv.task.expected.state_digest
    _, reward, terminated, _, _ = unitconv.step("done")
    assert terminated and reward == 0.0


def test_tool_errors_are_observations(unitconv):
    unitconv.reset(seed=0)
    cases = {
        "recall": ({"name": "missing"}, "no slot 'missing'"),
        "store": ({"name": "Bad Name", "value": 1}, "invalid slot name"),
        "calculate": ({"expression": "open('x')"}, "unsupported element"),
        "list_units": ({"dimension": "colour"}, "unknown dimension"),
    }
    for name, (args, fragment) in cases.items():
        obs, *_ = unitconv.step(unitconv.format.render_turn("", [ToolCall(id="1", name=name, arguments=args)]))
        assert obs.messages[0].error == "tool_exception" and fragment in obs.messages[0].content
