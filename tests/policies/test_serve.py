"""``toolgym serve`` on a tiny MoE, driven over real HTTP by OpenAIPolicy and raw httpx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")

import toolgym
from toolgym.envs.types import UserMessage
from toolgym.policies.chat import ChatRenderer
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.openai_policy import OpenAIPolicy
from toolgym.policies.serve import serve_in_thread
from toolgym.policy import PolicyRequest, SamplingParams


@pytest.fixture(scope="module")
def local():
    return HFPolicy.from_pretrained(cached_tiny_model("kimi"))


@pytest.fixture(scope="module")
def url(local):
    with serve_in_thread(local, max_batch=16, wait_ms=20) as base:
        yield base


def make_requests(n: int) -> list[PolicyRequest]:
    env = toolgym.make("toolgym/unitconv-v0")
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=i)
        sampling = SamplingParams(max_new_tokens=8, temperature=[1.0, 0.7, 0.0][i % 3], top_p=[1.0, 0.9, 1.0][i % 3])
        out.append(PolicyRequest(episode_id=f"e{i}", messages=list(env.messages), tools=obs.tools, seed=50 + i, sampling=sampling))
    return out


def test_chat_endpoint_matches_the_local_policy_token_for_token(local, url):
    requests = make_requests(6)
    direct = asyncio.run(local.generate(requests))
    remote = asyncio.run(OpenAIPolicy(url).generate(requests))
    for d, r in zip(direct, remote, strict=True):
        assert r.error is None
        assert (r.text, r.token_ids, r.prompt_token_ids, r.finish_reason) == (d.text, d.token_ids, d.prompt_token_ids, d.finish_reason)
        # The server may batch differently than the local call did: same tokens, log-probs to float noise.
        assert max(abs(x - y) for x, y in zip(r.logprobs, d.logprobs, strict=True)) < 1e-4


def test_completions_endpoint_matches_too(local, url):
    requests = make_requests(3)
    direct = asyncio.run(local.generate(requests))
    remote = asyncio.run(OpenAIPolicy(url, api="completions", prompt_renderer=ChatRenderer(local.tokenizer)).generate(requests))
    assert [(r.token_ids, r.text) for r in remote] == [(d.token_ids, d.text) for d in direct]
    assert all(max(abs(x - y) for x, y in zip(r.logprobs, d.logprobs, strict=True)) < 1e-4 for r, d in zip(remote, direct, strict=True))


def test_concurrent_requests_are_batched(url):
    before = httpx.get(f"{url}/health").json()
    turns = asyncio.run(OpenAIPolicy(url).generate(make_requests(8)))
    after = httpx.get(f"{url}/health").json()
    assert all(t.error is None for t in turns)
    assert after["jobs"] - before["jobs"] == 8
    assert after["batches"] - before["batches"] < 8


def test_prompt_over_the_context_is_a_context_overflow(url):
    request = make_requests(1)[0]
    request.messages.append(UserMessage(content="x " * 5000))
    turn = asyncio.run(OpenAIPolicy(url).generate([request]))[0]
    assert turn.error is not None and turn.error.kind == "context_overflow"


def test_raw_http_answers_follow_the_openai_shape(url):
    body = {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "seed": 1,
        "logprobs": True, "return_tokens_as_token_ids": True,
    }
    answer = httpx.post(f"{url}/v1/chat/completions", json=body).json()
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert all(e["token"].startswith("token_id:") for e in choice["logprobs"]["content"])
    assert answer["usage"]["completion_tokens"] == len(choice["logprobs"]["content"])
    assert "token_ids" not in choice  # only with return_token_ids
    assert httpx.get(f"{url}/v1/models").json()["data"][0]["object"] == "model"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, "streaming is not supported"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n=2 is not supported"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "invalid request"),
        ({"messages": []}, "invalid request"),
    ],
)
def test_bad_requests_get_openai_style_400s(url, body, message):
    response = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_out_of_vocabulary_prompt_ids_are_refused(url):
    response = httpx.post(f"{url}/v1/completions", json={"prompt": [1, 10**9], "max_tokens": 2})
    assert response.status_code == 400 and "within [0," in response.json()["error"]["message"]


def test_cli_serve_runs_a_real_server_process(local):
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = cached_tiny_model("kimi")
    code = "from toolgym.cli import app; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", str(folder), "--port", str(port), "--max-batch", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"toolgym serve did not come up: {proc.communicate(timeout=5)[0][-2000:]}")
            time.sleep(0.1)
        requests = make_requests(2)
        remote = asyncio.run(OpenAIPolicy(f"http://127.0.0.1:{port}").generate(requests))
        direct = asyncio.run(local.generate(requests))
        assert [r.token_ids for r in remote] == [d.token_ids for d in direct]
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"] == folder.name
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_serve_reports_a_missing_model_dir(tmp_path):
    from typer.testing import CliRunner

    from toolgym.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())
