"""Routing replay through the RL system: workers record each sampled token's experts, the learner replays them."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from toolgym.errors import ConfigError
from toolgym.trainers import metrics as m
from toolgym.trainers.config import TrainConfig

BASE = {
    "algorithm": {"group_size": 2, "filter_zero_variance": False, "routing_replay": True},
    "optim": {"lr": 1e-3, "minibatch_size": 4, "micro_batch_size": 2},
    "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 24, "token_budget": 64},
    "run": {"iterations": 1, "seed": 0, "torch_threads": 1, "tensorboard": False, "plots": False},
    "env": {"id": "toolgym/unitconv-v0"},
}
MOE_LAYERS = {"kimi": [1, 2], "qwen3": [0, 1, 2]}
"""Transformer-layer index of each MoE layer of the tiny kinds (Kimi's first layer is dense)."""


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a Ray Train rank on a loaded 2-core host (410 s measured there); a hang still fails
@pytest.mark.parametrize("kind", sorted(MOE_LAYERS))
def test_workers_record_routes_rows_carry_them_and_the_ray_train_learner_replays_them(ray_local, kind):
    """Sync on Ray: 1 HF inference worker generating in bfloat16 (as a serving engine would), a float32 Ray Train
    learner. The bf16 routers pick other experts for some tokens; replay makes the training forward use exactly
    the recorded experts in every layer, and its log-prob gap to the behaviour policy is smaller than without."""
    from toolgym.trainers.run import load_policy
    from toolgym.trainers.system.driver import SystemTrainer

    cfg = TrainConfig.from_dict({**BASE, "model": {"tiny": kind}, "system": {
        "mode": "sync", "inference_workers": 1, "inference_dtype": "bfloat16", "learner_backend": "ray_train",
        "learner_cpus": 0.5}})
    model, tokenizer = load_policy(cfg)
    trainer = SystemTrainer(cfg, model, tokenizer)
    try:
        row = trainer.iteration()
        rows = [r for group in trainer.last_collected.groups for scored in group for r in scored.rows]
    finally:
        trainer.close()
    assert rows and row[m.ROWS] > 0
    for r in rows:  # one record per sampled token, (MoE layers, top_k) each; none on prompt or env tokens
        assert r.routed_experts is not None and len(r.routed_experts) == len(r.input_ids)
        for t, bit in enumerate(r.loss_mask):
            assert (len(r.routed_experts[t]) == len(MOE_LAYERS[kind])) == bool(bit)
    assert row[m.ROUTING_RECORDED_FRAC] == pytest.approx(1.0)
    for layer in MOE_LAYERS[kind]:  # logged per layer, every step
        assert row[m.ROUTING_LAYER_AGREEMENT.format(layer=layer)] == pytest.approx(1.0)
        assert 0.0 < row[m.ROUTING_LAYER_ROUTER_AGREEMENT.format(layer=layer)] <= 1.0
    assert row[m.ROUTING_AGREEMENT] == pytest.approx(1.0)
    assert row[m.ROUTING_ROUTER_AGREEMENT] < 1.0  # bf16 generation routed some tokens elsewhere
    assert 0.0 < row[m.ROUTING_GAP_REPLAY] < row[m.ROUTING_GAP_FREE]


def test_routing_replay_with_a_vllm_worker_is_refused_by_the_config():
    """vLLM does not report routed experts: refused when the config is read, naming the field and the fixes."""
    with pytest.raises(ConfigError, match=r"algorithm\.routing_replay.*vLLM.*system\.engine: hf.*routing_replay: false"):
        TrainConfig.from_dict({**BASE, "model": {"tiny": "qwen3"}, "system": {"mode": "sync", "engine": "vllm"}})
    TrainConfig.from_dict({**BASE, "model": {"tiny": "qwen3"}, "system": {"mode": "async", "engine": "hf"}})


def test_an_openai_engine_must_return_routes_for_replay():
    """A toolgym serve whose policy records routing passes the preflight and its routes reach the engine's results;
    one that does not is refused before any work, naming algorithm.routing_replay."""
    pytest.importorskip("fastapi")
    from toolgym.policies.generation import GenerationJob
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model
    from toolgym.policies.serve import serve_in_thread
    from toolgym.policy import SamplingParams
    from toolgym.trainers.system.inference import EngineSpec, OpenAIEngine, check_engine_url

    folder = cached_tiny_model("qwen3")
    with serve_in_thread(HFPolicy.from_pretrained(folder)) as base:
        check_engine_url(base + "/v1", "system.engine_urls[0]")  # fine without replay
        with pytest.raises(ConfigError, match=r"algorithm\.routing_replay: system\.engine_urls\[0\].*no routed_experts"):
            check_engine_url(base + "/v1", "system.engine_urls[0]", routing=True)
    recording = HFPolicy.from_pretrained(folder, record_routing=True)
    job = GenerationJob(prompt_ids=[5, 9, 13], seed=3, sampling=SamplingParams(max_new_tokens=5))
    with serve_in_thread(recording) as base:
        check_engine_url(base + "/v1", "system.engine_urls[0]", routing=True)
        engine = OpenAIEngine(EngineSpec(kind="openai", url=base + "/v1", record_routing=True))
        remote, = asyncio.run(engine.generate_ids([job]))
        engine.close()
    local, = asyncio.run(recording.generate_ids([job]))
    assert not isinstance(remote, Exception) and not isinstance(local, Exception)
    assert remote.token_ids == local.token_ids and remote.routed_experts == local.routed_experts is not None


def test_a_model_whose_router_cannot_be_replayed_is_refused_before_ray_starts():
    """A dense model with routing replay on: SystemTrainer fails at once naming the field, before any role starts."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    from toolgym.policies.routing import RoutingError
    from toolgym.trainers.system.driver import SystemTrainer

    dense = AutoModelForCausalLM.from_config(Qwen3Config(vocab_size=300, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=1, num_attention_heads=2,
                                                         num_key_value_heads=1, head_dim=16))
    cfg = TrainConfig.from_dict({**BASE, "model": {"tiny": "qwen3"}, "system": {"mode": "sync"}})
    with pytest.raises(RoutingError, match=r"algorithm\.routing_replay.*turn algorithm\.routing_replay off"):
        SystemTrainer(cfg, dense, tokenizer=None)
