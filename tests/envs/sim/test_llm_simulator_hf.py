"""LLMSimulator on the real local-model path: a random tiny model cannot simulate an API, and
that must come out as a counted simulator_error, never as a crash or as the agent's fault."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from sim_helpers import act, notes_tools

from toolgym.envs.sim import LLMSimulator, SimulatedToolEnv
from toolgym.envs.types import Task
from toolgym.policy import SamplingParams


@pytest.mark.slow
def test_tiny_model_garbage_is_a_counted_simulator_error():
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model

    policy = HFPolicy.from_pretrained(cached_tiny_model("kimi"), max_batch_size=2)
    sim = LLMSimulator(policy, attempts=1, sampling=SamplingParams(temperature=1.0, max_new_tokens=12))
    env = SimulatedToolEnv(notes_tools(), sim)
    env.reset(seed=0, options={"task": Task(id="t", instruction="x")})
    message, info = act(env, "get_weather", city="Oslo")
    assert message.error == "simulator_error" and "reply began" in message.content
    assert info["errors"] == {"simulator_error": 1} and sim.stats.errors == 1 and sim.stats.policy_calls == 1
    assert env.stop_reason is None  # the episode goes on; the count lets the rollout attribute it


@pytest.mark.slow
async def test_endpoint_garbage_through_toolgym_serve_is_a_counted_simulator_error():
    """The same, with the simulator's policy an OpenAI-compatible endpoint (toolgym serve)."""
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model
    from toolgym.policies.openai_policy import OpenAIPolicy
    from toolgym.policies.serve import serve_in_thread

    local = HFPolicy.from_pretrained(cached_tiny_model("kimi"), max_batch_size=2)
    with serve_in_thread(local) as base:
        sim = LLMSimulator(OpenAIPolicy(f"{base}/v1", "tiny"), attempts=1, sampling=SamplingParams(max_new_tokens=12))
        env = SimulatedToolEnv(notes_tools(), sim)
        env.reset(seed=0, options={"task": Task(id="t", instruction="x")})
        obs, _, _, _, info = await env.astep('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert obs.messages[0].error == "simulator_error"
    assert info["errors"] == {"simulator_error": 1} and sim.stats.errors == 1
