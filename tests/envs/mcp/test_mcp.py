"""MCP: list a real stdio server's tools, proxy calls to it, survive its death, or simulate it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("mcp")

from toolgym.envs import check_env
from toolgym.envs.mcp import (
    MCPClient,
    MCPServerError,
    MCPToolEnv,
    MCPToolError,
    load_mcp_tools,
    mcp_output,
    mcp_simulated_env,
    mcp_tool_to_sim,
)
from toolgym.envs.types import AssistantMessage, Limits, StopReason, Task, ToolCall

SERVER = {"command": sys.executable, "args": [str(Path(__file__).with_name("server_notes.py"))], "name": "notes"}
TASK = Task(id="notes", instruction="Keep notes.", limits=Limits(tool_timeout_s=1.0))


def act(env, name: str, **arguments):
    obs, _, _, _, info = env.step(AssistantMessage(tool_calls=[ToolCall(id=f"c{len(env.messages)}", name=name, arguments=arguments)]))
    return obs.messages[0], info


@pytest.fixture(scope="module")
def proxy():
    env = MCPToolEnv(SERVER)
    yield env
    env.close()


def test_listing_gives_specs_with_schemas():
    tools = {t.name: t for t in load_mcp_tools(SERVER)}
    assert set(tools) == {"add_note", "get_note", "count_notes", "crash", "hang"}
    add = tools["add_note"]
    assert add.spec.function.description == "Create a note and return it with its new id."
    assert add.spec.function.parameters["required"] == ["title"] and "title" not in add.spec.function.parameters
    assert tools["count_notes"].returns["properties"]["result"]["type"] == "integer"


def test_proxy_forwards_calls_and_keeps_the_server_state(proxy):
    proxy.reset(seed=0, options={"task": TASK})
    message, _ = act(proxy, "add_note", title="milk", body="2 l")
    note = json.loads(message.content)
    assert note["title"] == "milk"
    assert json.loads(act(proxy, "get_note", id=note["id"])[0].content) == note
    assert proxy.world["calls"][-1] == {"tool": "get_note", "arguments": {"id": note["id"]}, "output": note}


def test_tool_errors_and_bad_arguments_are_the_agents(proxy):
    proxy.reset(seed=0, options={"task": TASK})
    message, _ = act(proxy, "get_note", id="nope")
    assert message.error == "tool_exception" and "no note with id 'nope'" in message.content
    message, _ = act(proxy, "add_note", titel="x")
    assert message.error == "invalid_arguments" and "Did you mean 'title'" in message.content


def test_a_hanging_tool_times_out_and_the_server_lives_on(proxy):
    proxy.reset(seed=0, options={"task": TASK})
    start = time.perf_counter()
    message, _ = act(proxy, "hang", seconds=3)
    assert message.error == "timeout" and time.perf_counter() - start < 5
    assert act(proxy, "count_notes")[0].error is None and proxy.stop_reason is None


def spoil(text: str, surrogate: str, at: int) -> str:
    i = at % (len(text) + 1)
    return text[:i] + surrogate + text[i:]


@settings(max_examples=15, deadline=None)
@given(title=st.text(max_size=8), body=st.text(max_size=8), surrogate=st.integers(0xD800, 0xDFFF).map(chr),
       at=st.integers(0, 9), where=st.sampled_from(["title", "body", "key"]))
def test_a_lone_surrogate_in_the_models_argument_is_its_error_and_never_reaches_the_server(proxy, title, body, surrogate, at, where):
    proxy.reset(seed=0, options={"task": TASK})
    before = json.loads(act(proxy, "count_notes")[0].content)
    arguments = {"title": title, "body": body}
    if where == "key":
        arguments[spoil("x", surrogate, at)] = "y"
    else:
        arguments[where] = spoil(arguments[where], surrogate, at)
    message, info = act(proxy, "add_note", **arguments)
    assert message.error == "invalid_arguments" and "holds a lone surrogate" in message.content
    assert info["errors"] == {"invalid_arguments": 1} and proxy.stop_reason is None and proxy.client.alive
    assert json.loads(act(proxy, "count_notes")[0].content) == before  # the server never saw the call, and lives
    assert all(c["tool"] != "add_note" for c in proxy.world["calls"])


def test_the_client_itself_refuses_to_send_a_lone_surrogate(proxy):
    with pytest.raises(MCPToolError, match=r"arguments\.title holds a lone surrogate.*not sent to the server"):
        proxy.client.call_tool("add_note", {"title": "a\ud800"})
    assert proxy.client.alive


@pytest.mark.parametrize("output", [{"title": "a\udfff"}, ["ok", {"\ud800": 1}], "text \udbff"])
def test_a_server_answer_holding_a_lone_surrogate_is_broken_output_not_the_agents(proxy, monkeypatch, output):
    proxy.reset(seed=0, options={"task": TASK})

    async def answer(name, arguments, timeout_s=None):
        return output

    monkeypatch.setattr(proxy.client, "acall_tool", answer)
    message, info = act(proxy, "count_notes")
    assert message.error == "simulator_error" and "holds a lone surrogate" in message.content
    assert info["errors"] == {"simulator_error": 1} and proxy.stop_reason is None  # not fatal: the server lives
    message.content.encode("utf-8")


def test_a_server_that_dies_gives_a_typed_result_and_ends_the_episode():
    env = MCPToolEnv(SERVER)
    try:
        env.reset(seed=0, options={"task": TASK})
        start = time.perf_counter()
        message, info = act(env, "crash")
        assert time.perf_counter() - start < 5  # no hang
        assert message.error == "simulator_error" and "died" in message.content
        assert info["errors"] == {"simulator_error": 1} and env.stop_reason is StopReason.ENV_ERROR
        env.reset(seed=0, options={"task": TASK})  # a fresh server
        assert json.loads(act(env, "count_notes")[0].content) == {"result": 0}
    finally:
        env.close()


def test_calls_to_a_dead_client_fail_at_once():
    client = MCPClient(SERVER).start()
    client.list_tools()
    with pytest.raises(MCPServerError, match="died or closed"):
        client.call_tool("crash", {})
    with pytest.raises(MCPServerError, match="is not running") as caught:
        client.call_tool("count_notes", {})
    assert caught.value.fatal
    client.close()
    client.close()


def test_a_server_that_cannot_start_is_named():
    with pytest.raises(MCPServerError, match="MCP server 'broken'.*failed to start|did not finish"):
        MCPToolEnv({"command": sys.executable, "args": ["-c", "import sys; sys.exit(2)"], "name": "broken", "start_timeout_s": 10})


def test_proxy_passes_the_checker():
    env = MCPToolEnv(SERVER)
    check_env(env, task=TASK)


def test_proxy_refuses_tasks_with_state_it_cannot_set(proxy):
    with pytest.raises(Exception, match="cannot be set from a task.*mcp_simulated_env"):
        proxy.reset(seed=0, options={"task": Task(id="s", instruction="x", initial_state={"entities": {}})})


def test_simulate_mode_needs_no_server_after_import():
    env = mcp_simulated_env(SERVER)
    check_env(env)
    env.reset(seed=0, options={"task": TASK})
    note = json.loads(act(env, "add_note", title="milk")[0].content)
    assert note["title"] == "milk" and json.loads(act(env, "get_note", id=note["id"])[0].content)["title"] == "milk"
    assert json.loads(act(env, "count_notes")[0].content).keys() == {"result"}


def test_wire_forms_convert():
    odd = mcp_tool_to_sim({"name": "notes/add note", "inputSchema": {"type": "object"}})
    assert odd.name == "notes_add_note" and "notes/add note" in odd.spec.function.description

    class Result:
        def __init__(self, wire):
            self.wire = wire

        def model_dump(self, **_):
            return self.wire

    assert mcp_output(Result({"content": [{"type": "text", "text": "[1, 2]"}]}), "t") == [1, 2]
    assert mcp_output(Result({"content": [{"type": "text", "text": "plain"}, {"type": "image", "mimeType": "image/png", "data": "..."}]}), "t") == ["plain", {"type": "image", "mimeType": "image/png"}]
    with pytest.raises(MCPToolError, match="t: boom"):
        mcp_output(Result({"content": [{"type": "text", "text": "boom"}], "isError": True}), "t")
