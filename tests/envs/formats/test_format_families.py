"""Each family's calls as its models write them (the forms its genuine template renders and the
variants models emit), and the malformed ones that must be parse errors, never answers."""

from __future__ import annotations

import pytest

from toolgym.envs.formats import FORMATS, get_format
from toolgym.envs.types import ToolCall, ToolSpec

WEATHER = ToolSpec.model_validate(
    {"function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
        "tags": {"type": "array"}, "zip": {"type": "string"}, "opts": {"type": "object"}}}}}
)

# (format, model text, [(name, arguments)], content)
GOOD = [
    # DeepSeek V3.1: one call, then two calls with content before them
    ("deepseek", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Oslo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
     [("get_weather", {"city": "Oslo"})], ""),
    ("deepseek", 'Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>a<｜tool▁sep｜>{"x": 1}<｜tool▁call▁end｜>'
     '<｜tool▁call▁begin｜>b<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
     [("a", {"x": 1}), ("b", {})], "Checking."),
    # DeepSeek R1 / V3-0324: type, name, fenced JSON
    ("deepseek", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Oslo"}\n```'
     '<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
     [("get_weather", {"city": "Oslo"}), ("f", {})], ""),
    # Llama: bare JSON with "parameters", with "arguments", after <|python_tag|>, several with ";"
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Oslo"}}', [("get_weather", {"city": "Oslo"})], ""),
    ("llama3_json", '{"name": "get_weather", "arguments": {"city": "Oslo"}}<|eot_id|>', [("get_weather", {"city": "Oslo"})], ""),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}<|eom_id|>', [("get_weather", {"city": "Oslo"})], ""),
    ("llama3_json", 'Let me look.<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"y": [1]}}',
     [("a", {}), ("b", {"y": [1]})], "Let me look."),
    ("llama3_json", '[{"name": "a", "parameters": {}}, {"name": "b", "arguments": "{\\"k\\": 2}"}]', [("a", {}), ("b", {"k": 2})], ""),
    ("llama3_json", 'The record is {"name": "Ada", "born": 1815}.', [], 'The record is {"name": "Ada", "born": 1815}.'),
    # GLM-4.5 as its template renders calls (no newline before </tool_call>) and as its prompt shows them
    ("glm45", '<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n<arg_key>days</arg_key>\n'
     '<arg_value>3</arg_value></tool_call>', [("get_weather", {"city": "Oslo", "days": 3})], ""),
    ("glm45", 'Sure.\n<tool_call>get_weather\n<arg_key>zip</arg_key>\n<arg_value>01234</arg_value>\n<arg_key>metric</arg_key>\n'
     '<arg_value>true</arg_value>\n<arg_key>tags</arg_key>\n<arg_value>["a", "b"]</arg_value>\n</tool_call>\n<tool_call>noargs\n</tool_call>',
     [("get_weather", {"zip": "01234", "metric": True, "tags": ["a", "b"]}), ("noargs", {})], "Sure."),
    # Qwen3-Coder, including the Python spellings its template writes for non-JSON values
    ("qwen3_coder", '<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n<parameter=days>\n2\n</parameter>\n'
     '<parameter=metric>\nTrue\n</parameter>\n</function>\n</tool_call>', [("get_weather", {"city": "New York", "days": 2, "metric": True})], ""),
    ("qwen3_coder", 'Two.\n<tool_call>\n<function=get_weather>\n<parameter=zip>\n007\n</parameter>\n<parameter=opts>\n{"a": 1}\n</parameter>\n'
     '</function>\n</tool_call>\n<tool_call>\n<function=f>\n</function>\n</tool_call><|im_end|>',
     [("get_weather", {"zip": "007", "opts": {"a": 1}}), ("f", {})], "Two."),
    # harmony: after the generation prompt, with a full header, recipient after the role, analysis first
    ("harmony", '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
     [("get_weather", {"city": "Oslo"})], ""),
    ("harmony", '<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather '
     '<|constrain|>json<|message|>{"city": "Oslo"}<|call|>', [("get_weather", {"city": "Oslo"})], ""),
    ("harmony", '<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{}<|call|>', [("f", {})], ""),
    ("harmony", '<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>It is 4.<|return|>', [], "It is 4."),
    ("harmony", 'Just text.', [], "Just text."),
    # Mistral: JSON list (with and without ids), newer NAME[ARGS] (with and without [CALL_ID])
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]', [("get_weather", {"city": "Oslo"})], ""),
    ("mistral", '[TOOL_CALLS] [{"name": "a", "arguments": {}, "id": "abc123def"}, {"name": "b", "arguments": {"k": 1}, "id": "zzz999yyy"}]</s>',
     [("a", {}), ("b", {"k": 1})], ""),
    ("mistral", 'Looking.[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}[TOOL_CALLS]f[ARGS]{}', [("get_weather", {"city": "Oslo"}), ("f", {})], "Looking."),
    ("mistral", '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Oslo"}', [("get_weather", {"city": "Oslo"})], ""),
]


@pytest.mark.parametrize("name,text,calls,content", GOOD)
def test_family_calls_parse(name, text, calls, content):
    parsed = get_format(name).parse(text, tools=[WEATHER])
    assert parsed.errors == []
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == calls
    assert parsed.content == content


def test_given_call_ids_are_kept():
    assert [c.id for c in get_format("mistral").parse('[TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS]{}').tool_calls] == ["a1b2c3d4e"]
    listed = get_format("mistral").parse('[TOOL_CALLS][{"name": "f", "arguments": {}, "id": "abc123def"}]')
    assert [c.id for c in listed.tool_calls] == ["abc123def"]
    assert [c.id for c in get_format("deepseek").parse(
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", id_prefix="call_3_").tool_calls] == ["call_3_0"]


MALFORMED = [
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{bad<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "not valid JSON"),
    ("deepseek", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>', "must sit between"),
    ("deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "NAME<｜tool▁sep｜>"),
    ("deepseek", "<｜tool▁calls▁begin｜>junk<｜tool▁calls▁end｜>", "unreadable text"),
    ("llama3_json", '{"name": "f", "parameters": {"a": 1}', "not valid JSON"),
    ("llama3_json", '{"name": "f", "parameters": [1]}', "must be a JSON object"),
    ("llama3_json", '<|python_tag|>brave_search.call(query="x")', "only JSON calls"),
    ("glm45", "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1</arg_value>", "never closed"),
    ("glm45", "<tool_call>f\n<arg_key>a</arg_key>\n</tool_call>", "each argument is"),
    ("glm45", "<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>", "function name"),
    ("glm45", "done </tool_call>", "outside a call"),
    ("qwen3_coder", "<tool_call>\n<function=f>\n<parameter=a>\n1\n</function>\n</tool_call>", "parameter never closed"),
    ("qwen3_coder", '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', "must start with <function="),
    ("qwen3_coder", "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n", "never closed"),
    ("harmony", "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{oops<|call|>", "not valid JSON"),
    ("harmony", "<|channel|>commentary to=browser.search<|message|>{}<|call|>", "functions.NAME"),
    ("harmony", "<|start|>functions.f to=assistant<|channel|>commentary<|message|>{}<|end|>", "only write assistant messages"),
    ("harmony", "hello <|end|>", "outside any message"),
    ("mistral", "[TOOL_CALLS][{bad json", "not valid JSON"),
    ("mistral", '[TOOL_CALLS]f{"a": 1}', "[ARGS]"),
    ("mistral", '[TOOL_CALLS]f[ARGS]{"a": 1} and then I said', "text after a call"),
    ("mistral", 'answer [ARGS]{"a": 1}', "outside a call"),
]


@pytest.mark.parametrize("name,text,fragment", MALFORMED)
def test_malformed_family_calls_are_parse_errors(name, text, fragment):
    parsed = get_format(name).parse(text)
    assert parsed.errors, f"{text!r} should not parse cleanly"
    assert any(fragment in e.message for e in parsed.errors), [e.message for e in parsed.errors]


# One clean call per format, as its own renderer writes it.
CALL = ToolCall(id="c0", name="get_weather", arguments={"city": "Oslo"})
WRITTEN = {name: fmt.render_turn("", [CALL]) for name, fmt in FORMATS.items()}


@pytest.mark.parametrize("expected,written", [(e, w) for e in FORMATS for w in FORMATS if e != w])
def test_a_call_in_another_format_is_a_parse_error_not_an_answer(expected, written):
    parsed = get_format(expected).parse(WRITTEN[written])
    read_as_intended = [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert parsed.errors or read_as_intended, f"{written} call silently read as an answer by {expected}"
    if not read_as_intended:
        assert any(written in e.message or "tool call" in e.message or "JSON" in e.message for e in parsed.errors)


@pytest.mark.parametrize("expected", sorted(FORMATS))
def test_the_foreign_format_is_named(expected):
    """Where the env's parser sees no call of its own, the error names the format it saw."""
    for written, text in WRITTEN.items():
        if written == expected:
            continue
        parsed = get_format(expected).parse("Here you go. " + text)
        if not parsed.tool_calls:
            assert any(f"in the {written} format" in e.message for e in parsed.errors), (expected, written, parsed)


def test_mixed_formats_in_one_turn_report_the_stranger():
    text = WRITTEN["hermes"] + "\n" + WRITTEN["mistral"]
    parsed = get_format("hermes").parse(text)
    assert [c.name for c in parsed.tool_calls] == ["get_weather"]
    assert any("in the mistral format" in e.message for e in parsed.errors)


def test_every_format_renders_tools_and_results():
    from toolgym.envs.types import ToolMessage

    for fmt in FORMATS.values():
        assert "get_weather" in fmt.render_tools([WEATHER])
        assert "sunny" in fmt.render_result(ToolMessage(tool_call_id="c0", name="get_weather", content="sunny"))


ATOMIC = tuple(m for f in FORMATS.values() for m in getattr(f, "markers", ())) + ("<think>", "</think>", "<|eot_id|>")


def _cuts(text: str) -> list[int]:
    """Positions a generation can stop at: anywhere but inside a special-token marker."""
    inside: set[int] = set()
    for marker in ATOMIC:
        start = text.find(marker)
        while start >= 0:
            inside.update(range(start + 1, start + len(marker)))
            start = text.find(marker, start + 1)
    return [i for i in range(1, len(text)) if i not in inside]


@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"openai"}))
def test_half_a_call_is_never_an_answer(name):
    """Every prefix of a rendered two-call turn (a generation stopped mid-call) is read as calls
    or as an error, never as a clean final answer. (openai: text that does not yet say
    "tool_calls" is plain content by that format's definition.)"""
    fmt = get_format(name)
    calls = [ToolCall(id=f"c{i}", name=f"f{i}", arguments={"q": f"v{i}", "n": [i]}) for i in range(2)]
    text = fmt.render_turn("", calls)
    for cut in _cuts(text):
        parsed = fmt.parse(text[:cut], tools=[])
        assert parsed.errors or parsed.tool_calls, (name, text[:cut])
