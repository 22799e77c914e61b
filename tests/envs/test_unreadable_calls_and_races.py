"""Structured calls with unreadable arguments parse as errors in every format; deadline
interrupts never leak out of the call they were meant for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import deadline
from toolgym.envs.formats import FORMATS, get_format
from toolgym.envs.types import ToolCall

UNREADABLE = st.one_of(
    st.text(max_size=30).filter(lambda s: not s.strip().startswith("{") and s.strip() != ""),
    st.sampled_from(['{"a": ', "[1, 2]", '{"a": NaN}', "{" * 500, '"just a string"', "<tool_call>", "<|tool_call_end|>"]),
    st.lists(st.integers(), max_size=3),
)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@settings(max_examples=60, deadline=None)
@given(raw=UNREADABLE, content=st.text(max_size=20))
def test_unreadable_structured_arguments_are_parse_errors_in_every_format(fmt, raw, content):
    form = get_format(fmt)
    good = ToolCall(id="call_0", name="convert", arguments={"value": 1})
    turn = form.parse(form.render_turn(content, [good], [("convert", raw)]))
    assert turn.errors, "an unreadable call must not vanish or become a final answer"
    assert [c.name for c in turn.tool_calls] == ["convert"]


def test_interrupts_never_leak_out_of_the_call_they_were_meant_for():
    # Thousands of calls whose deadline falls right around their end: a late interrupt that
    # escaped would surface here, in the caller, as DeadlineExceeded.
    def work(n: int) -> int:
        total = 0
        for i in range(n):
            total += i
        return total

    outcomes = {"ok": 0, "timeout": 0}
    for i in range(3000):
        try:
            deadline.WATCHDOG.run(work, {"n": 200 + (i % 50) * 40}, 0.0005)
            outcomes["ok"] += 1
        except TimeoutError:
            outcomes["timeout"] += 1
        for _ in range(50):  # code after the call: where a leaked interrupt would land
            pass
    assert sum(outcomes.values()) == 3000


@pytest.mark.parametrize("fmt", ["hermes", "openai"])
def test_raw_text_cannot_smuggle_a_valid_call(fmt):
    form = get_format(fmt)
    turn = form.parse(form.render_turn("", [], [("convert", '1, "arguments": {}')]))
    assert turn.errors and not turn.tool_calls
