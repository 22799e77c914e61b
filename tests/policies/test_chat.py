"""Message conversion shared by HFPolicy, OpenAIPolicy and the server."""

from __future__ import annotations

import json

from toolgym.envs.types import (
    AssistantMessage,
    FunctionSpec,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)
from toolgym.policies.chat import to_chat_dicts, tool_dicts

CALL = ToolCall(id="call_1_0", name="convert", arguments={"value": 3, "from_unit": "mi", "to_unit": "km"})
RAW = '<tool_call>\n{"name": "convert", "arguments": {"value": 3, "from_unit": "mi", "to_unit": "km"}}\n</tool_call>'
CONVERSATION = [
    SystemMessage(content="sys"),
    UserMessage(content="convert 3 mi"),
    AssistantMessage(content="", tool_calls=[CALL], raw=RAW),
    ToolMessage(tool_call_id="call_1_0", name="convert", content='{"value": 4.828}'),
    AssistantMessage(content="", raw="<tool_call>oops"),
    ToolMessage(tool_call_id="parse_error_2_0", name="", content="Error (parse_error): ...", error="parse_error"),
]


def test_raw_history_sends_what_the_policy_wrote():
    dicts = to_chat_dicts(CONVERSATION)
    assert [d["role"] for d in dicts] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert dicts[2] == {"role": "assistant", "content": RAW}
    assert dicts[3] == {"role": "tool", "tool_call_id": "call_1_0", "name": "convert", "content": '{"value": 4.828}'}
    assert dicts[4]["content"] == "<tool_call>oops"


def test_structured_history_sends_tool_calls_and_demotes_unanswerable_results():
    dicts = to_chat_dicts(CONVERSATION, history="structured", arguments="json")
    call = dicts[2]["tool_calls"][0]
    assert call["id"] == "call_1_0" and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == CALL.arguments
    assert dicts[2]["content"] == ""
    assert dicts[3]["role"] == "tool"
    assert dicts[5] == {"role": "user", "content": "Error (parse_error): ..."}  # answers no call


def test_messages_without_raw_are_structured_in_either_mode():
    message = AssistantMessage(content="hi", tool_calls=[CALL])
    assert to_chat_dicts([message]) == to_chat_dicts([message], history="structured")
    assert to_chat_dicts([message])[0]["tool_calls"][0]["function"]["arguments"] == CALL.arguments


def test_tool_dicts_are_openai_function_specs():
    spec = ToolSpec(function=FunctionSpec(name="f", description="d", parameters={"type": "object", "properties": {}}))
    assert tool_dicts([spec]) == [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}]
