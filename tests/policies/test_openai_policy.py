"""OpenAIPolicy against scripted HTTP answers: retries, typed errors, tool calls, token ids."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from toolgym.envs.formats import HermesFormat, KimiK2Format
from toolgym.envs.types import AssistantMessage, FunctionSpec, ToolCall, ToolMessage, ToolSpec, UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.openai_policy import OpenAIPolicy
from toolgym.policy import PolicyRequest, SamplingParams

TOOLS = [ToolSpec(function=FunctionSpec(name="convert", description="Convert units."))]


def request(seed: int = 1, **sampling) -> PolicyRequest:
    return PolicyRequest(
        episode_id=f"e{seed}", messages=[UserMessage(content="3 mi in km?")], tools=TOOLS, seed=seed,
        sampling=SamplingParams(**sampling),
    )


def chat_answer(content: str | None = "ok", **choice) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", **choice}]}


def policy_for(handler, **kwargs) -> OpenAIPolicy:
    return OpenAIPolicy("http://test", "m", transport=httpx.MockTransport(handler), backoff_s=0.001, **kwargs)


def run(policy, requests):
    return asyncio.run(policy.generate(requests))


def test_request_body_carries_tools_sampling_seed_and_token_id_fields():
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.url.path, json.loads(req.content)))
        return httpx.Response(200, json=chat_answer())

    run(policy_for(handler, api_key="sk-test"), [request(seed=42, max_new_tokens=7, temperature=0.5, top_p=0.9, stop=["</tool_call>"])])
    path, body = seen[0]
    assert path == "/v1/chat/completions"
    assert body["tools"][0]["function"]["name"] == "convert"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.5, 0.9, 42)
    assert body["stop"] == ["</tool_call>"] and body["logprobs"] is True
    assert body["return_token_ids"] is True and body["return_tokens_as_token_ids"] is True
    assert body["messages"] == [{"role": "user", "content": "3 mi in km?"}]


def test_structured_history_sends_json_string_arguments():
    bodies = []

    def handler(req):
        bodies.append(json.loads(req.content))
        return httpx.Response(200, json=chat_answer())

    r = request()
    r.messages += [
        AssistantMessage(tool_calls=[ToolCall(id="c0", name="convert", arguments={"value": 3})], raw="<tool_call>..."),
        ToolMessage(tool_call_id="c0", name="convert", content="4.8"),
    ]
    run(policy_for(handler, history="structured", token_ids=False), [r])
    sent = bodies[0]["messages"][1]
    assert sent["tool_calls"][0]["function"]["arguments"] == '{"value": 3}'
    assert "return_token_ids" not in bodies[0]


def test_token_ids_and_logprobs_are_read_from_vllm_fields():
    entries = [{"token": "token_id:5", "logprob": -0.5}, {"token": "token_id:9", "logprob": -1.25}]

    def handler(req):
        answer = chat_answer("hi", logprobs={"content": entries})
        answer["prompt_token_ids"] = [1, 2, 3]
        return httpx.Response(200, json=answer)

    turn = run(policy_for(handler), [request()])[0]
    assert (turn.token_ids, turn.logprobs, turn.prompt_token_ids) == ([5, 9], [-0.5, -1.25], [1, 2, 3])
    # choices[0].token_ids wins over the token strings
    answer = chat_answer("hi", logprobs={"content": entries}, token_ids=[7, 8])
    turn = run(policy_for(lambda req: httpx.Response(200, json=answer)), [request()])[0]
    assert turn.token_ids == [7, 8]


def test_mismatched_ids_and_logprobs_are_a_bad_response():
    answer = chat_answer("hi", logprobs={"content": [{"token": "a", "logprob": -1.0}]}, token_ids=[1, 2])
    turn = run(policy_for(lambda req: httpx.Response(200, json=answer)), [request()])[0]
    assert turn.error.kind == "bad_response" and "2 token ids but 1 log-probs" in turn.error.message


def test_structured_tool_calls_are_rendered_in_the_env_format():
    calls = [{"id": "c1", "type": "function", "function": {"name": "convert", "arguments": '{"value": 3, "from_unit": "mi"}'}}]
    answer = {"choices": [{"message": {"role": "assistant", "content": "Checking.", "tool_calls": calls}, "finish_reason": "tool_calls"}]}
    for fmt in (HermesFormat(), KimiK2Format()):
        turn = run(policy_for(lambda req: httpx.Response(200, json=answer), tool_format=fmt.name), [request()])[0]
        parsed = fmt.parse(turn.text)
        assert turn.finish_reason == "stop" and parsed.errors == []
        assert parsed.content == "Checking."
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("convert", {"value": 3, "from_unit": "mi"})]


def test_unreadable_tool_call_arguments_stay_visible_as_a_parse_error():
    calls = [{"id": "c1", "type": "function", "function": {"name": "convert", "arguments": '{"value": 3'}}]
    answer = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": calls}}]}
    turn = run(policy_for(lambda req: httpx.Response(200, json=answer)), [request()])[0]
    parsed = HermesFormat().parse(turn.text)
    assert parsed.tool_calls == [] and len(parsed.errors) == 1


def test_retries_429_and_5xx_then_succeeds():
    statuses = iter([429, 503, 200])
    calls = []

    def handler(req):
        calls.append(1)
        status = next(statuses)
        return httpx.Response(status, json=chat_answer("finally") if status == 200 else {"error": {"message": "busy"}})

    turn = run(policy_for(handler, max_retries=3), [request()])[0]
    assert turn.error is None and turn.text == "finally" and len(calls) == 3


def test_gives_up_after_the_retries_with_an_endpoint_error():
    calls = []

    def handler(req):
        calls.append(1)
        return httpx.Response(500, json={"error": {"message": "boom"}})

    turn = run(policy_for(handler, max_retries=2), [request()])[0]
    assert len(calls) == 3 and turn.finish_reason == "error"
    assert turn.error.kind == "endpoint_error" and "HTTP 500" in turn.error.message and "gave up after 3 attempts" in turn.error.message


def test_context_length_400_is_context_overflow_without_retry():
    calls = []

    def handler(req):
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 4096 tokens", "code": None}})

    turn = run(policy_for(handler), [request()])[0]
    assert turn.error.kind == "context_overflow" and len(calls) == 1


def test_garbage_answers_are_bad_responses():
    for response in (httpx.Response(200, text="<html>gateway</html>"), httpx.Response(200, json={"choices": []}), httpx.Response(200, json=[1, 2])):
        turn = run(policy_for(lambda req, r=response: r), [request()])[0]
        assert turn.error.kind == "bad_response", response.content


def test_timeouts_are_typed_and_retried():
    calls = []

    def handler(req):
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=req)

    turn = run(policy_for(handler, max_retries=1, timeout_s=0.5), [request()])[0]
    assert turn.error.kind == "timeout" and len(calls) == 2 and "within 0.5s" in turn.error.message


def test_endpoint_down_is_an_endpoint_error():
    with socket.socket() as sock:  # bound but never listening: connections are refused, and no one else can take the port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        policy = OpenAIPolicy(f"http://127.0.0.1:{port}", max_retries=1, backoff_s=0.001)
        turn = run(policy, [request()])[0]
    assert turn.error.kind == "endpoint_error" and "cannot reach" in turn.error.message


def test_one_bad_request_fails_alone():
    def handler(req):
        seed = json.loads(req.content)["seed"]
        return httpx.Response(404, json={"error": {"message": "no"}}) if seed == 2 else httpx.Response(200, json=chat_answer(f"s{seed}"))

    turns = run(policy_for(handler), [request(seed=s) for s in range(4)])
    assert [t.error.kind if t.error else t.text for t in turns] == ["s0", "s1", "endpoint_error", "s3"]


def test_concurrency_is_limited():
    live, peak = 0, 0

    async def handler(req):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1
        return httpx.Response(200, json=chat_answer())

    turns = run(policy_for(handler, max_concurrency=3), [request(seed=s) for s in range(10)])
    assert all(t.error is None for t in turns) and peak == 3


def test_completions_api_sends_rendered_token_ids():
    bodies = []

    def handler(req):
        bodies.append((req.url.path, json.loads(req.content)))
        return httpx.Response(200, json={"choices": [{"text": "x", "logprobs": {"tokens": ["token_id:4"], "token_logprobs": [-0.1]}, "finish_reason": "length"}]})

    policy = policy_for(handler, api="completions", prompt_renderer=lambda messages, tools: [1, 2, len(messages)])
    turn = run(policy, [request()])[0]
    assert bodies[0][0] == "/v1/completions" and bodies[0][1]["prompt"] == [1, 2, 1]
    assert (turn.prompt_token_ids, turn.token_ids, turn.logprobs, turn.finish_reason) == ([1, 2, 1], [4], [-0.1], "length")


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match="needs prompt_renderer"):
        OpenAIPolicy("http://x", api="completions")
    with pytest.raises(ConfigError, match="unknown tool-call format"):
        OpenAIPolicy("http://x", tool_format="xml")
