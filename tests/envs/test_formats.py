"""Tool-call formats: render -> parse round trips, and no input ever raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.formats import FORMATS, get_format
from toolgym.envs.formats.kimi import MARKERS
from toolgym.envs.types import ToolCall, ToolMessage, ToolSpec
from toolgym.errors import ConfigError

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,15}", fullmatch=True)  # FunctionSpec's name pattern
MARKER_TEXT = st.sampled_from((
    "</tool_call>", "<tool_call>", "<|tool_call_end|>", "<|tool_calls_section_end|>", "a<b", "<think>", "</think>",
    "[TOOL_CALLS]", "[ARGS]", "[/THINK]", "<｜tool▁call▁end｜>", "<|call|>", "<|end|>", "<|python_tag|>", '{"name": "x", "parameters": {}}',
))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | MARKER_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ARGS = st.dictionaries(st.text(max_size=10), JSON, max_size=4)
ALL_MARKERS = tuple(m for f in FORMATS.values() for m in getattr(f, "markers", ()))
FORBIDDEN = ("<tool_call>", "</tool_call>", '"tool_calls"', '"name"', "think>", "THINK]", "<function=", "<|", "<｜", "to=functions") + MARKERS + ALL_MARKERS
CONTENT = st.text(max_size=60).filter(lambda s: not any(m in s for m in FORBIDDEN)).map(str.strip)
# GLM-4.5 and Qwen3-Coder write keys and values as bare text: tests/envs/formats/ covers them
# with schema-typed values; every other format carries any JSON.
JSON_FORMATS = sorted(set(FORMATS) - {"glm45", "qwen3_coder"})


@pytest.mark.parametrize("name", JSON_FORMATS)
@settings(max_examples=120, deadline=None)
@given(content=CONTENT, calls=st.lists(st.tuples(NAMES, ARGS), min_size=0, max_size=3))
def test_render_then_parse_round_trips(name, content, calls):
    fmt = get_format(name)
    tool_calls = [ToolCall(id=f"functions.{n}:{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)]
    if name == "openai" and not tool_calls and content.startswith(("{", "[")):
        return  # plain JSON-looking text with no calls is simply content; nothing to round-trip
    if name == "llama3_json" and not tool_calls and content.startswith("{"):
        return  # a Llama turn opening with "{" is read as a (here broken) call, by design
    parsed = fmt.parse(fmt.render_turn(content, tool_calls))
    assert parsed.errors == []
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in tool_calls]
    assert parsed.content == content


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200) | st.sampled_from(FORBIDDEN).flatmap(lambda m: st.text(max_size=40).map(lambda t: m + t + m[::-1])))
def test_garbage_never_raises(name, text):
    parsed = get_format(name).parse(text)
    assert isinstance(parsed.content, str)
    for call in parsed.tool_calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)


MALFORMED = {
    "hermes": [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'string "name"'),
        ('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "f", "arguments": "{bad"}</tool_call>', "arguments are not valid JSON"),
        ('<tool_call>{"name": "f"}', "unbalanced"),
        ('</tool_call> hello', "unbalanced"),
    ],
    "openai": [
        ('{"tool_calls": [', "not valid JSON"),
        ('{"tool_calls": 3}', '"tool_calls" list'),
        ('{"tool_calls": [{"type": "function"}]}', "each tool call needs"),
        ('{"tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}', "arguments are not valid JSON"),
    ],
    "kimi_k2": [
        ("<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}<|tool_call_end|>", "must sit between"),
        ("<|tool_calls_section_begin|><|tool_call_begin|>f<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>", "functions.NAME:INDEX"),
        ("<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{x<|tool_call_end|><|tool_calls_section_end|>", "not valid JSON"),
        ("<|tool_calls_section_begin|>junk<|tool_calls_section_end|>", "unreadable text"),
    ],
}


@pytest.mark.parametrize("name,text,fragment", [(n, t, f) for n, cases in MALFORMED.items() for t, f in cases])
def test_malformed_calls_become_parse_errors(name, text, fragment):
    parsed = get_format(name).parse(text)
    assert parsed.errors, f"{text!r} should not parse cleanly"
    assert any(fragment in e.message for e in parsed.errors), [e.message for e in parsed.errors]


def test_parallel_calls_in_every_format():
    calls = [ToolCall(id=f"functions.f{i}:{i}", name=f"f{i}", arguments={"i": f"v{i}"}) for i in range(3)]
    for fmt in FORMATS.values():
        parsed = fmt.parse(fmt.render_turn("thinking", calls))
        assert [c.name for c in parsed.tool_calls] == ["f0", "f1", "f2"], fmt.name


def test_kimi_ids_and_tool_rendering():
    fmt = get_format("kimi_k2")
    text = "ok<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:3<|tool_call_argument_begin|>{\"city\": \"Oslo\"}<|tool_call_end|><|tool_calls_section_end|>"
    parsed = fmt.parse(text)
    assert parsed.content == "ok" and parsed.tool_calls[0].id == "functions.get_weather:3"
    assert parsed.tool_calls[0].arguments == {"city": "Oslo"}
    spec = ToolSpec.model_validate({"function": {"name": "get_weather", "description": "d"}})
    for f in FORMATS.values():
        assert "get_weather" in f.render_tools([spec])
        assert "sunny" in f.render_result(ToolMessage(tool_call_id="x", name="get_weather", content="sunny"))


def test_unknown_format_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'hermes'"):
        get_format("hermez")


@pytest.mark.parametrize("name", ["hermes", "kimi_k2"])
def test_arguments_holding_format_markers_round_trip(name):
    fmt = get_format(name)
    tricky = {"note": "</tool_call> <|tool_call_end|> <|tool_calls_section_end|> a<b"}
    parsed = fmt.parse(fmt.render_turn("", [ToolCall(id="functions.f:0", name="f", arguments=tricky)]))
    assert parsed.errors == [] and parsed.tool_calls[0].arguments == tricky
    plain = fmt.render_turn("", [ToolCall(id="functions.f:0", name="f", arguments={"x": "a<b"})])
    assert "a<b" in plain  # escaping only when a marker would otherwise end the call early
