"""``OpenAIPolicy`` per-request isolation: one unreadable answer fails only its own request.

An ``httpx.MockTransport`` answers N concurrent requests; the one picked by hypothesis gets
garbage (bytes, JSON of the wrong shape, hostile JSON, a broken gzip body, a transport that
raises). That request becomes a turn with a typed error; every other request is read normally.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.types import UserMessage
from toolgym.policies.openai_policy import OpenAIPolicy
from toolgym.policy import PolicyRequest, SamplingParams


class Broken(Exception):
    """A transport bug (not an httpx error)."""


def ok_answer(seed: int) -> dict:
    message = {"role": "assistant", "content": f"answer {seed}"}
    logprobs = {"content": [{"token": "token_id:7", "logprob": -0.5}]}
    return {"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs, "token_ids": [7]}]}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)
wrong_shapes = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict) or "choices" not in v),
    st.builds(lambda c: {"choices": c}, st.one_of(st.just([]), st.lists(json_values, min_size=1, max_size=2))),
    st.builds(lambda m: {"choices": [{"message": m}]}, json_values.filter(lambda v: not isinstance(v, dict))),
    st.just({"choices": [{"message": {"role": "assistant", "content": "x"}, "token_ids": [1, 2], "logprobs": {"content": [{"token": "a", "logprob": 0.0}]}}]}),
    st.builds(lambda t: {"choices": [{"message": {"role": "assistant", "tool_calls": t}}]}, json_values),
)


def as_response(kind: str, value: object) -> httpx.Response:
    if kind == "json":
        return httpx.Response(200, content=json.dumps(value).encode(), headers={"content-type": "application/json"})
    if kind == "bytes":
        return httpx.Response(200, content=value)  # type: ignore[arg-type]
    if kind == "gzip":  # claims gzip, is not: httpx raises DecodingError while reading
        return httpx.Response(200, content=b"not gzip at all", headers={"content-encoding": "gzip"})
    raise Broken("the transport itself failed")


garbage = st.one_of(
    st.tuples(st.just("json"), wrong_shapes),
    st.tuples(st.just("bytes"), st.one_of(
        st.binary(max_size=64), st.just(b"[" * 5000), st.just(b'{"choices": ' + b"9" * 5000 + b"}"), st.just(b'{"a": NaN}'),
    )),
    st.tuples(st.just("gzip"), st.none()),
    st.tuples(st.just("raise"), st.none()),
)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(min_value=2, max_value=6), bad=st.integers(min_value=0, max_value=5), answer=garbage)
def test_one_unreadable_answer_fails_only_its_own_request(n, bad, answer):
    bad %= n
    kind, value = answer

    def handler(request: httpx.Request) -> httpx.Response:
        seed = json.loads(request.content)["seed"]
        return as_response(kind, value) if seed == bad else httpx.Response(200, json=ok_answer(seed))

    policy = OpenAIPolicy("http://test", "m", transport=httpx.MockTransport(handler), max_retries=0)
    requests = [
        PolicyRequest(episode_id=f"e{i}", messages=[UserMessage(content="hi")], seed=i, sampling=SamplingParams(max_new_tokens=4))
        for i in range(n)
    ]
    turns = asyncio.run(policy.generate(requests))
    assert len(turns) == n
    for i, turn in enumerate(turns):
        if i == bad:
            if turn.error is None:  # a garbage answer that is still a readable chat completion
                assert kind == "json"
                continue
            expected = "endpoint_error" if kind == "raise" else "bad_response"
            assert turn.error.kind == expected and turn.finish_reason == "error", turn.error
        else:
            assert turn.error is None and turn.text == f"answer {i}" and turn.token_ids == [7] and turn.logprobs == [-0.5]
