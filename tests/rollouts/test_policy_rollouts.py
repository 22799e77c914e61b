"""The real policies in the rollout loop: a tiny random MoE on UnitConv, locally and over HTTP.

The random model writes noise with the odd tool-call tag in it; the loop must treat all of it
as data (error observations, counted), keep token-faithful records, and end only the episode
whose policy call failed.
"""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from toolgym.envs.formats import HermesFormat
from toolgym.envs.types import StopReason
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.openai_policy import OpenAIPolicy
from toolgym.policies.serve import serve_in_thread
from toolgym.rollouts import SamplingParams, run_episodes, sample_tasks

ENV = "toolgym/unitconv-v0"
SAMPLING = SamplingParams(max_new_tokens=96)
RUN_SEED = 3
"""A run seed whose random-model turns include malformed tool calls, which
test_hf_policy_drives_the_loop_end_to_end needs; re-pick it if the seed derivation
(toolgym.envs.canonical.seed_from) ever changes."""


@pytest.fixture(scope="module")
def local():
    return HFPolicy.from_pretrained(cached_tiny_model("kimi"))


@pytest.fixture(scope="module")
def url(local):
    with serve_in_thread(local) as base:
        yield base


def short_tasks(n: int, seed: int = 0):
    tasks = sample_tasks(ENV, n, seed=seed)
    return [t.model_copy(update={"limits": t.limits.model_copy(update={"max_turns": 3})}) for t in tasks]


@pytest.fixture(scope="module")
def local_episodes(local):
    return run_episodes(ENV, local, tasks=short_tasks(6), seed=RUN_SEED, sampling=SAMPLING)


def assert_same_episodes(a, b):
    """Same everything (tokens included); log-probs to float noise, since batches can differ in shape."""
    skip = {"wall_s": True, "turns": {"__all__": {"env_s", "policy_s", "logprobs"}}}
    assert [e.model_dump(exclude=skip) for e in a] == [e.model_dump(exclude=skip) for e in b]
    pairs = [(x, y) for ea, eb in zip(a, b, strict=True) for ta, tb in zip(ea.turns, eb.turns, strict=True) for x, y in zip(ta.logprobs, tb.logprobs, strict=True)]
    assert pairs and max(abs(x - y) for x, y in pairs) < 1e-4


def test_hf_policy_drives_the_loop_end_to_end(local, local_episodes):
    hermes = HermesFormat()
    end = set(local.end_ids)
    assert all(e.failure is None and e.stop_reason in (StopReason.ANSWERED, StopReason.MAX_TURNS) for e in local_episodes)
    for episode in local_episodes:
        for k, turn in enumerate(episode.turns):
            assert len(turn.token_ids) == len(turn.logprobs) > 0 and all(lp <= 0 for lp in turn.logprobs)
            body = turn.token_ids[:-1] if turn.token_ids[-1] in end else turn.token_ids
            assert turn.text == local.tokenizer.decode(body, skip_special_tokens=False)
            # The first prompt is the opening rendered by the template; later prompts extend the
            # previous turn's prompt and sampled ids (tests/rollouts/test_token_faithful.py).
            seen = episode.messages[: turn.observation_start - 1]
            if k == 0:
                assert turn.prompt_token_ids == local.renderer.token_ids(seen, episode.tools)
            else:
                before = episode.turns[k - 1].prompt_token_ids + episode.turns[k - 1].token_ids
                assert turn.prompt_token_ids[: len(before)] == before
            # Malformed calls are data: every parse problem became a counted error observation.
            assert turn.errors.get("parse_error", 0) == len(hermes.parse(turn.text).errors)
    assert sum(e.error_counts().get("parse_error", 0) for e in local_episodes) > 0


def test_openai_policy_against_toolgym_serve_gives_the_same_episodes(url, local_episodes):
    remote = run_episodes(ENV, OpenAIPolicy(url), tasks=short_tasks(6), seed=RUN_SEED, sampling=SAMPLING)
    assert_same_episodes(remote, local_episodes)


def test_a_policy_failure_ends_only_its_episode(url, local_episodes):
    tasks = short_tasks(6)
    broken_instruction = tasks[2].instruction

    async def flaky(request: httpx.Request) -> httpx.Response:
        """Forward to the real server, except answer garbage for one task's episode."""
        body = json.loads(request.content)
        if body["messages"][1]["content"] == broken_instruction:
            return httpx.Response(200, text="<html>502 Bad Gateway</html>")
        async with httpx.AsyncClient() as client:
            real = await client.post(f"{url}{request.url.path}", content=request.content, headers={"content-type": "application/json"})
        return httpx.Response(real.status_code, content=real.content, headers={"content-type": "application/json"})

    policy = OpenAIPolicy("http://flaky", transport=httpx.MockTransport(flaky))
    episodes = run_episodes(ENV, policy, tasks=tasks, seed=RUN_SEED, sampling=SAMPLING)
    failed = episodes[2]
    assert failed.stop_reason is StopReason.POLICY_ERROR and not failed.scorable
    assert failed.failure.boundary == "policy" and failed.failure.kind == "bad_response"
    others = [e for i, e in enumerate(episodes) if i != 2]
    assert_same_episodes(others, [e for i, e in enumerate(local_episodes) if i != 2])
