from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from toolgym.envs.types import (
    AssistantMessage,
    Message,
    Observation,
    StopReason,
    Task,
    ToolCall,
    ToolMessage,
    ToolResult,
    trusted,
)


def test_messages_are_a_discriminated_union():
    adapter = TypeAdapter(list[Message])
    raw = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "name": "f", "arguments": {"a": 1}}]},
        {"role": "tool", "tool_call_id": "1", "name": "f", "content": "ok"},
    ]
    msgs = adapter.validate_python(raw)
    assert [type(m).__name__ for m in msgs] == ["SystemMessage", "UserMessage", "AssistantMessage", "ToolMessage"]
    with pytest.raises(ValidationError):
        adapter.validate_python([{"role": "robot", "content": "x"}])


def test_stop_reasons_separate_terminated_truncated_and_failures():
    assert StopReason.ANSWERED.terminated and not StopReason.ANSWERED.truncated
    assert StopReason.MAX_TURNS.truncated and not StopReason.MAX_TURNS.terminated
    assert StopReason.POLICY_ERROR.is_failure and not StopReason.POLICY_ERROR.terminated
    assert not StopReason.ENV_ERROR.truncated


def test_task_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="instructions"):
        Task.model_validate({"id": "t", "instruction": "x", "instructions": "typo"})


@pytest.mark.parametrize(
    "cls,data",
    [
        (ToolMessage, {"role": "tool", "tool_call_id": "a", "name": "f", "content": "c", "error": None}),
        (ToolResult, {"call_id": "a", "name": "f", "output": {"x": 1}, "error": None, "truncated": False}),
        (AssistantMessage, {"role": "assistant", "content": "hi", "tool_calls": [ToolCall(id="1", name="f")], "raw": "hi", "reasoning": None}),
        (ToolCall, {"id": "1", "name": "f", "arguments": {"a": [1, 2]}}),
        (Observation, {"messages": [], "tools": []}),
    ],
)
def test_trusted_construction_equals_validated_construction(cls, data):
    fast, slow = trusted(cls, dict(data)), cls(**data)
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()
    assert cls.model_validate_json(fast.model_dump_json()) == slow
