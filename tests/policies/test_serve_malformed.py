"""Every malformed request to ``toolgym serve`` gets a 4xx with an OpenAI-style error body, never a 500.

Hypothesis builds the requests: a valid body with one or more fields replaced by a value that
field cannot take, raw bytes, hostile JSON (deep nesting, huge numbers, NaN, lone surrogates),
oversized bodies and wrong content types. Every generated body is invalid by construction, so
none of them reaches the model.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.serve import serve_in_thread

LIMIT = 64
BODY_BYTES = 32 * 1024
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 1}
COMPLETION = {"prompt": "hi", "max_tokens": 2, "seed": 1}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client():
    policy = HFPolicy.from_pretrained(cached_tiny_model("kimi"))
    with serve_in_thread(policy, max_tokens_limit=LIMIT, max_body_bytes=BODY_BYTES) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def assert_4xx(response: httpx.Response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"] and error["type"] == "invalid_request_error"
    return error


# --------------------------------------------------------------------------- values a field cannot take

words = st.text(alphabet="xz", min_size=1, max_size=5)  # not a number, not a boolean pydantic would coerce
containers = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
not_number = st.one_of(words, containers)
not_int = st.one_of(not_number, st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)))
not_bool = st.one_of(words, containers, st.integers(min_value=2), st.floats(min_value=0.1, max_value=0.9))
not_str = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), containers)
roles = ("system", "developer", "user", "assistant", "tool")
bad_messages = st.one_of(
    not_str.filter(lambda v: not isinstance(v, list)),
    st.just([]),
    st.lists(st.one_of(st.integers(), words), min_size=1, max_size=2),
    st.builds(lambda r: [{"role": r, "content": "hi"}], st.text(max_size=8).filter(lambda r: r not in roles)),
    st.just([{"content": "hi"}]),
    st.builds(lambda c: [{"role": "user", "content": c}], st.one_of(st.integers(), st.booleans(), st.dictionaries(words, words, max_size=2))),
    st.builds(lambda a: [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": a}}]}], st.just("{not json")),
)
bad_tools = st.one_of(
    not_str.filter(lambda v: not isinstance(v, list)),
    st.lists(st.one_of(st.integers(), words), min_size=1, max_size=2),
    st.just([{"type": "function"}]),
    st.builds(lambda n: [{"type": "function", "function": {"name": n}}], not_str),
    st.builds(lambda p: [{"type": "function", "function": {"name": "f", "parameters": p}}], st.one_of(st.integers(), words, st.lists(st.integers()))),
    st.builds(lambda t: [{"type": t, "function": {"name": "f"}}], words),
)
COMMON = {
    "model": not_str,
    "temperature": st.one_of(st.floats(max_value=-1e-9, allow_infinity=False), not_number),
    "top_p": st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.0, exclude_min=True, allow_infinity=False), not_number),
    "max_tokens": st.one_of(st.integers(max_value=0), st.integers(min_value=LIMIT + 1, max_value=10**90), not_int),
    "seed": not_int,
    "n": st.one_of(st.integers(max_value=0), st.integers(min_value=2, max_value=10**30), not_int),
    "stream": st.one_of(st.just(True), not_bool),
    "stop": st.one_of(st.integers(), st.dictionaries(words, words, min_size=1, max_size=2), st.lists(st.integers(), min_size=1), st.just([""]), st.just(["s"] * 40)),
    "return_token_ids": not_bool,
}
CHAT_FIELDS = {
    **COMMON,
    "messages": bad_messages,
    "tools": bad_tools,
    "logprobs": not_bool,
    "max_completion_tokens": st.integers(min_value=LIMIT + 1, max_value=10**6),
    "prompt_prefix_token_ids": st.one_of(st.lists(st.integers(max_value=-1), min_size=1, max_size=3), st.just([10**9]), st.lists(words, min_size=1, max_size=2)),
    "prompt_prefix_messages": st.one_of(st.integers(max_value=-1), not_int),
}
COMPLETION_FIELDS = {
    **COMMON,
    "prompt": st.one_of(st.integers(), st.booleans(), st.dictionaries(words, words, max_size=2), st.just([]),
                        st.lists(st.integers(max_value=-1), min_size=1, max_size=3), st.just([1, 10**9]), st.lists(words, min_size=1, max_size=2)),
    "echo": not_bool,
}


@st.composite
def broken(draw, valid: dict, fields: dict) -> dict:
    names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
    body = dict(valid)
    for name in names:
        body[name] = draw(fields[name])
    if draw(st.booleans()) and "messages" in body and "messages" not in names:
        del body["messages"]  # also: the required field is missing
    return body


@SETTINGS
@given(body=broken(CHAT, CHAT_FIELDS))
def test_chat_requests_with_wrong_fields_get_4xx(client, body):
    assert_4xx(client.post("/v1/chat/completions", json=body))


@SETTINGS
@given(body=broken(COMPLETION, COMPLETION_FIELDS))
def test_completion_requests_with_wrong_fields_get_4xx(client, body):
    assert_4xx(client.post("/v1/completions", json=body))


# --------------------------------------------------------------------------- hostile bytes

def _with(field: str, raw: str) -> bytes:
    """The valid chat body with ``field``'s value replaced by raw JSON text."""
    text = json.dumps({**CHAT, field: "@@"})
    return text.replace('"@@"', raw).encode()


def not_an_object(raw: bytes) -> bool:
    """Random bytes or text that happen to form a valid request would rightly be served."""
    try:
        return not isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return True


hostile = st.one_of(
    st.binary(max_size=200).filter(not_an_object),
    st.integers(min_value=65, max_value=20_000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(min_value=62, max_value=5_000).map(lambda n: _with("messages", "[" * n + "]" * n)),
    st.integers(min_value=101, max_value=6_000).map(lambda n: _with("seed", "9" * n)),
    st.sampled_from(["1e400", "-1e999", "NaN", "Infinity", "-Infinity"]).map(lambda v: _with("temperature", v)),
    st.sampled_from(['"\\ud800"', '"a\\udfffb"']).map(lambda s: _with("messages", f'[{{"role": "user", "content": {s}}}]')),
    st.sampled_from(['"\\udc00"']).map(lambda s: _with("tools", f'[{{"type": "function", "function": {{"name": {s}}}}}]')),
    st.just(b'{"messages": [{"role": "user", "content": "hi"}], "\\ud800": 1}'),
    st.just(b'{"prompt": "\\ud800", "max_tokens": 2}'),
    st.text(max_size=50).map(lambda t: t.encode("utf-8")).filter(not_an_object),
    st.just(b"\xff\xfe{}"),
)


@SETTINGS
@given(raw=hostile, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_hostile_json_gets_4xx(client, raw, path):
    assert_4xx(client.post(path, content=raw, headers={"content-type": "application/json"}))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(media=st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "image/png"]))
def test_wrong_content_type_gets_415(client, media):
    error = assert_4xx(client.post("/v1/chat/completions", content=json.dumps(CHAT).encode(), headers={"content-type": media}))
    assert "application/json" in error["message"]


def test_oversized_bodies_get_413_declared_or_streamed(client):
    big = json.dumps({**CHAT, "pad": "x" * BODY_BYTES}).encode()
    assert client.post("/v1/chat/completions", content=big).status_code == 413

    def chunks():  # no content-length: the server counts while reading
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and f"{BODY_BYTES:,}" in response.json()["error"]["message"]


def test_max_tokens_over_the_limit_is_refused_naming_the_limit(client):
    error = assert_4xx(client.post("/v1/chat/completions", json={**CHAT, "max_tokens": LIMIT + 1}))
    assert f"limit of {LIMIT}" in error["message"] and error["code"] == "max_tokens_too_large"
    ok = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": LIMIT, "temperature": 1e-30, "top_p": 1e-300})
    assert ok.status_code == 200  # at the limit, with a vanishing temperature and top_p: served (greedy)


def test_the_server_is_healthy_after_the_fuzz(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["running"] == 0
