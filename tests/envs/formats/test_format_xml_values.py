"""GLM-4.5 and Qwen3-Coder write argument values as bare text: round trips with values typed
from the tool's schema, and what happens without one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import ToolEnv, tool
from toolgym.envs.formats import get_format
from toolgym.envs.formats.values import typed_value
from toolgym.envs.types import Task, ToolCall, ToolSpec

XML = ["glm45", "qwen3_coder"]
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,15}", fullmatch=True)
KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
# Values the syntax can carry: any text but the closing tags of a value, and any JSON.
UNWRITABLE = ("</arg_value>", "</parameter>", "<think>", "</think>")
TEXT = st.text(max_size=30).filter(lambda s: not any(u in s for u in UNWRITABLE))
SCALAR = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(SCALAR | TEXT, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
ARGS = st.dictionaries(KEYS, st.one_of(TEXT, JSON), max_size=4)
# Content holding another format's call markers is reported by design (test_format_families.py).
CONTENT = st.text(max_size=40).filter(lambda s: not any(c in s for c in "<[{") and "think" not in s).map(str.strip)


def schema_for(name: str, args: dict) -> ToolSpec:
    """A tool whose schema types each parameter as its value's JSON type."""
    kinds = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object", type(None): "null"}
    props = {k: {"type": kinds[type(v)]} for k, v in args.items()}
    return ToolSpec.model_validate({"function": {"name": name, "parameters": {"type": "object", "properties": props}}})


@pytest.mark.parametrize("name", XML)
@settings(max_examples=120, deadline=None)
@given(content=CONTENT, calls=st.lists(st.tuples(NAMES, ARGS), max_size=3, unique_by=lambda c: c[0]))
def test_round_trip_with_schema_typed_values(name, content, calls):
    fmt = get_format(name)
    tool_calls = [ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)]
    tools = [schema_for(n, a) for n, a in calls]
    parsed = fmt.parse(fmt.render_turn(content, tool_calls), tools=tools)
    assert parsed.errors == []
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in tool_calls]
    assert parsed.content == content


@pytest.mark.parametrize("name", XML)
def test_string_parameters_stay_text_others_are_decoded(name):
    fmt = get_format(name)
    spec = ToolSpec.model_validate({"function": {"name": "f", "parameters": {"type": "object", "properties": {
        "code": {"type": "string"}, "n": {"type": "integer"}, "flags": {"type": ["array", "null"]}}}}})
    text = fmt.render_turn("", [ToolCall(id="c", name="f", arguments={"code": "42", "n": 7, "flags": [1, "x"]})])
    assert fmt.parse(text, tools=[spec]).tool_calls[0].arguments == {"code": "42", "n": 7, "flags": [1, "x"]}
    # Without a schema a digit string cannot be told from a number: it becomes one.
    assert fmt.parse(text).tool_calls[0].arguments["code"] == 42


def test_undecodable_non_string_value_stays_text_for_the_argument_check():
    assert typed_value("three", "integer", True) == "three"
    assert typed_value(" 3 ", "integer", True) == 3
    assert typed_value("None", "null", True) is None
    assert typed_value('"quoted"', None, False) == '"quoted"'
    assert typed_value('"quoted"', "string", True) == '"quoted"'


@pytest.mark.parametrize("name", XML)
def test_a_value_holding_its_closing_tag_is_written_as_json_text(name):
    """The syntax has no escape: the renderer writes such a string as a JSON string instead, so
    the call still parses (the value reads back as that JSON text, documented)."""
    fmt = get_format(name)
    tricky = "a </arg_value> </parameter> b"
    parsed = fmt.parse(fmt.render_turn("", [ToolCall(id="c", name="f", arguments={"v": tricky})]))
    assert parsed.errors == [] and len(parsed.tool_calls) == 1


class Labels(ToolEnv):
    """A world of labels: a string parameter that may look like a number."""

    def setup(self, task: Task) -> None:
        self.world = {"labels": []}

    @tool
    def label(self, text: str, copies: int = 1) -> list:
        """Add a label.

        Args:
            text: The label.
            copies: How many times.
        """
        self.world["labels"] += [text] * copies
        return self.world["labels"]


@pytest.mark.parametrize("name", XML)
def test_the_env_types_values_from_its_tool_schemas(name):
    env = Labels(tool_format=name, tasks=[Task(id="t", instruction="label")])
    env.reset(seed=0)
    text = env.format.render_turn("", [ToolCall(id="c", name="label", arguments={"text": "42", "copies": 2})])
    _, _, _, _, info = env.step(text)
    assert info["errors"] == {} and env.world["labels"] == ["42", "42"]
