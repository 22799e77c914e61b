"""Chat-template arguments (``enable_thinking``, ``thinking``, ``reasoning_effort``) through HFPolicy,
``toolgym serve`` (a request field), OpenAIPolicy and the renderer; bad ones refused by name."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("transformers")
pytest.importorskip("fastapi")

from toolgym.envs.types import UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.chat import ChatRenderer, check_template_kwargs
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.openai_policy import OpenAIPolicy
from toolgym.policy import PolicyRequest, SamplingParams

NO_THINK = "<think>\n\n</think>\n\n"


def _families():
    if "template_families" not in sys.modules:
        spec = importlib.util.spec_from_file_location("template_families", Path(__file__).with_name("template_families.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["template_families"] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules["template_families"]


@pytest.fixture(scope="module")
def qwen3_policy():
    families = _families()
    policy = HFPolicy(families.tiny_model("qwen3"), families.family_tokenizer("qwen3"))
    yield policy
    policy.close()


def _request(**sampling) -> PolicyRequest:
    return PolicyRequest(episode_id="e", messages=[UserMessage(content="hi")], seed=1, sampling=SamplingParams(max_new_tokens=2, **sampling))


def test_hf_policy_passes_template_arguments(qwen3_policy):
    off = HFPolicy(qwen3_policy.model, qwen3_policy.tokenizer, chat_template_kwargs={"enable_thinking": False})
    try:
        decode = qwen3_policy.tokenizer.decode
        assert decode(off.render(_request())).endswith(NO_THINK)
        assert not decode(qwen3_policy.render(_request())).endswith(NO_THINK)
    finally:
        off.close()


def test_serve_takes_chat_template_kwargs_per_request(qwen3_policy):
    from toolgym.policies.serve import serve_in_thread

    with serve_in_thread(qwen3_policy, max_batch=4, wait_ms=5) as base:
        def post(extra):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 0, "return_token_ids": True, **extra}
            return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)

        on, off = post({}), post({"chat_template_kwargs": {"enable_thinking": False}})
        assert on.status_code == off.status_code == 200
        prompt = off.json()["prompt_token_ids"]
        assert qwen3_policy.tokenizer.decode(prompt).endswith(NO_THINK)
        assert not qwen3_policy.tokenizer.decode(on.json()["prompt_token_ids"]).endswith(NO_THINK)
        bad = post({"chat_template_kwargs": {"tools": []}})
        assert bad.status_code == 400 and "chat_template_kwargs" in bad.text


def test_openai_policy_sends_chat_template_kwargs():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})

    policy = OpenAIPolicy("http://x", chat_template_kwargs={"reasoning_effort": "high"}, transport=httpx.MockTransport(answer))
    turn, = asyncio.run(policy.generate([_request()]))
    assert turn.text == "ok" and seen[0]["chat_template_kwargs"] == {"reasoning_effort": "high"}
    with pytest.raises(ConfigError, match="prompt renderer"):
        OpenAIPolicy("http://x", api="completions", prompt_renderer=lambda m, t: "p", chat_template_kwargs={"thinking": True})


@pytest.mark.parametrize("bad", [["enable_thinking"], {"add_generation_prompt": False}, {"not a name": 1}, {1: True}])
def test_bad_template_arguments_are_refused_by_name(bad):
    with pytest.raises(ConfigError, match="chat_template_kwargs"):
        check_template_kwargs(bad)
    with pytest.raises(ConfigError, match="chat_template_kwargs"):
        ChatRenderer(_families().family_tokenizer("qwen3"), chat_template_kwargs=bad)
