"""Reasoning is its own field: split off in every format, never in the content or the final answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import Limits, ToolEnv, tool
from toolgym.envs.formats import FORMATS, get_format
from toolgym.envs.formats.reasoning import THINK, split_reasoning
from toolgym.envs.types import AssistantMessage, StopReason, Task, ToolCall

TAGS = ("<think>", "</think>", "[THINK]", "[/THINK]")
PIECES = st.sampled_from(TAGS + ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|channel|>analysis<|message|>", "<|end|>", '{"name": "f", "parameters": {}}'))
TEXTISH = st.lists(st.text(max_size=15) | PIECES, max_size=8).map("".join)
PLAIN = st.text(max_size=40).filter(lambda s: not any(c in s for c in "<>[]{}|\"")).map(str.strip)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=60, deadline=None)
@given(text=TEXTISH)
def test_no_reasoning_tag_ever_reaches_the_content(name, text):
    parsed = get_format(name).parse(text)
    assert not any(tag in parsed.content for tag in ("<think>", "</think>"))


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=80, deadline=None)
@given(reasoning=PLAIN.filter(bool), answer=PLAIN, prompt_opened=st.booleans())
def test_thought_text_never_reaches_the_answer(name, reasoning, answer, prompt_opened):
    secret = f"SECRET {reasoning}"
    text = f"{secret}</think>{answer}" if prompt_opened else f"<think>{secret}</think>\n\n{answer}"
    parsed = get_format(name).parse(text)
    assert parsed.errors == [] and "SECRET" not in parsed.content
    assert parsed.reasoning == secret and parsed.content == answer


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=60, deadline=None)
@given(reasoning=PLAIN, content=PLAIN, n_calls=st.integers(0, 2))
def test_reasoning_round_trips_through_render_turn(name, reasoning, content, n_calls):
    fmt = get_format(name)
    calls = [ToolCall(id=f"c{i}", name=f"f{i}", arguments={"q": f"v{i}"}) for i in range(n_calls)]
    parsed = fmt.parse(fmt.render_turn(content, calls, reasoning=reasoning))
    assert parsed.errors == []
    assert parsed.reasoning == reasoning and parsed.content == content
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in calls]


def test_stated_handling_of_odd_blocks():
    two, answer, errors = split_reasoning("<think>a</think>x<think>b</think>y", THINK)
    assert (two, answer, errors) == (["a", "b"], "xy", [])
    _, answer, errors = split_reasoning("<think>never closed", THINK)
    assert answer == "" and "never closed" in errors[0].message
    _, answer, errors = split_reasoning("<think>a</think>b</think>c", THINK)
    assert answer == "bc" and "no open <think>" in errors[0].message


def test_family_reasoning_forms():
    harmony = get_format("harmony").parse("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>42<|return|>")
    assert (harmony.reasoning, harmony.content) == ("Think.", "42")
    magistral = get_format("mistral").parse("[THINK]Hmm.[/THINK]42")
    assert (magistral.reasoning, magistral.content) == ("Hmm.", "42")
    kimi = get_format("kimi_k2").parse("<think>Look it up.</think><|tool_calls_section_begin|><|tool_call_begin|>functions.f:0"
                                       "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>")
    assert kimi.reasoning == "Look it up." and [c.name for c in kimi.tool_calls] == ["f"]
    none = get_format("hermes").parse("plain")
    assert none.reasoning is None
    empty = get_format("hermes").parse("<think>\n\n</think>\n\nplain")  # Qwen3 with thinking off
    assert (empty.reasoning, empty.content, empty.errors) == ("", "plain", [])


@pytest.mark.parametrize("name", ["hermes", "deepseek", "glm45", "qwen3_coder", "kimi_k2", "llama3_json", "mistral"])
def test_a_call_inside_reasoning_is_not_run_and_is_reported(name):
    fmt = get_format(name)
    call = fmt.render_turn("", [ToolCall(id="c", name="f", arguments={"a": "b"})])
    parsed = fmt.parse(f"<think>maybe {call}</think>The answer is 4.")
    assert parsed.tool_calls == [] and parsed.content == "The answer is 4."
    assert any("inside the reasoning block" in e.message for e in parsed.errors)


def test_openai_content_spelling_tags_with_escapes_is_split_too():
    parsed = get_format("openai").parse('{"content": "\\u003cthink>hidden\\u003c/think>shown", "tool_calls": []}')
    assert parsed.content == "shown" and parsed.reasoning == "hidden"


class Counter(ToolEnv):
    """A counter world."""

    def setup(self, task: Task) -> None:
        self.world = {"n": 0}

    @tool
    def inc(self, by: int = 1) -> int:
        """Increase the counter.

        Args:
            by: Amount to add.
        """
        self.world["n"] += by
        return self.world["n"]


def _env(tool_format: str = "hermes") -> Counter:
    env = Counter(tool_format=tool_format, tasks=[Task(id="t", instruction="count", limits=Limits(max_turns=4))])
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_env_keeps_reasoning_out_of_the_final_answer(name):
    env = _env(name)
    fmt = env.format
    env.step(fmt.render_turn("", [ToolCall(id="c", name="inc", arguments={"by": 2})], reasoning="I will add two."))
    first = env.messages[-2]
    assert isinstance(first, AssistantMessage) and first.reasoning == "I will add two." and env.world["n"] == 2
    _, _, terminated, _, info = env.step(fmt.render_turn("It is 2.", [], reasoning="The tool said 2."))
    assert terminated and info["stop_reason"] is StopReason.ANSWERED
    assert env.final_answer == "It is 2."
    last = env.messages[-1]
    assert isinstance(last, AssistantMessage) and last.reasoning == "The tool said 2." and last.content == "It is 2."


def test_env_turns_broken_reasoning_into_error_observations():
    env = _env()
    obs, _, terminated, _, info = env.step("<think>Still thinking when the tokens ran out")
    assert not terminated and info["errors"] == {"parse_error": 1} and "never closed" in obs.messages[0].content
    obs, _, terminated, _, info = env.step('<think><tool_call>{"name": "inc", "arguments": {}}</tool_call></think>Done.')
    assert not terminated and env.world["n"] == 0 and "inside the reasoning block" in obs.messages[0].content
    assert env.final_answer == ""
