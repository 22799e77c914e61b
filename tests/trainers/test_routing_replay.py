"""Routing replay (R3): generation records each sampled token's experts, the training forward reuses them."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM

from toolgym.envs.types import StopReason, Task
from toolgym.policies.generation import GenerationJob, generate_batch
from toolgym.policies.models.configs import model_config
from toolgym.policies.routing import RoutingError, RoutingHooks
from toolgym.policies.scheduler import DecodeEngine
from toolgym.policy import SamplingParams
from toolgym.rollouts.episode import Episode, TurnRecord
from toolgym.rollouts.rows import TokenRow, collate, episode_to_rows
from toolgym.rollouts.storage import load_episodes, save_episodes
from toolgym.trainers import metrics as m
from toolgym.trainers.batch import make_batch
from toolgym.trainers.grpo import LossSettings, update_policy
from toolgym.trainers.routing import check_replayable, forced_routing, measure_routing, routing_trace

VOCAB = 300
KINDS = {"kimi": {"n_group": 4, "topk_group": 2}, "qwen3": {}}
"""Kimi-shaped DeepSeek-V3 with a group limit (so group-limited selection is exercised) and Qwen3-MoE."""


def tiny(kind: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config(kind, "tiny", vocab_size=VOCAB, **KINDS[kind]))
    for name, buffer in model.named_buffers():
        if name.endswith("e_score_correction_bias"):  # a non-zero bias steers selection, as after balancing
            buffer.uniform_(-0.002, 0.002)
    return model.to(dtype).eval()


def jobs(n: int = 3, new: int = 10) -> list[GenerationJob]:
    return [GenerationJob(prompt_ids=list(range(3, 8 + 2 * i)), seed=i, sampling=SamplingParams(max_new_tokens=new))
            for i in range(n)]


def generate(model, batch: list[GenerationJob]):
    return generate_batch(model, batch, pad_id=0, end_ids={2}, max_context=4096, decode=lambda ids: str(ids),
                          record_routing=True)


def rows_of(batch: list[GenerationJob], generated) -> list[TokenRow]:
    out = []
    for i, (job, gen) in enumerate(zip(batch, generated, strict=True)):
        p = len(job.prompt_ids)
        out.append(TokenRow(
            episode_id=f"e{i}", input_ids=job.prompt_ids + gen.token_ids, loss_mask=[0] * p + [1] * len(gen.token_ids),
            behaviour_logprobs=[0.0] * p + gen.logprobs, prompt_len=p, turn_spans=[(p, p + len(gen.token_ids))],
            turn_indices=[0], ends_episode=True, terminated=True, truncated=False,
            routed_experts=[[] for _ in job.prompt_ids] + gen.routed_experts,
        ))
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generation_records_the_experts_of_the_position_that_sampled_each_token(kind):
    model = tiny(kind)
    batch = jobs()
    generated = generate(model, batch)
    layers = 2 if kind == "kimi" else 3  # Kimi's first layer is dense
    for job, gen in zip(batch, generated, strict=True):
        assert gen.routed_experts is not None and len(gen.routed_experts) == len(gen.token_ids)
        assert all(len(entry) == layers and all(len(top) == 2 for top in entry) for entry in gen.routed_experts)
        # A fresh full forward (no cache, no padding) routes those positions to the same experts.
        ids = torch.tensor([job.prompt_ids + gen.token_ids])
        with torch.no_grad(), RoutingHooks(model) as hooks:
            model(input_ids=ids)
        start = len(job.prompt_ids) - 1  # the prompt's last position sampled the first token
        for layer, natural in enumerate(hooks.natural):
            fresh = natural[start : start + len(gen.token_ids)].sort(dim=-1).values
            recorded = torch.tensor([entry[layer] for entry in gen.routed_experts]).sort(dim=-1).values
            assert torch.equal(fresh, recorded)


def test_continuous_batching_records_what_the_batch_loop_records():
    model = tiny("qwen3")
    batch = [j.model_copy(update={"sampling": SamplingParams(max_new_tokens=6, temperature=0)}) for j in jobs()]
    expected = generate(model, batch)
    engine = DecodeEngine(model, pad_id=0, end_ids={2}, max_context=4096, decode=str, record_routing=True)
    done = dict(engine.step([(0, batch[0])]))
    done.update(engine.step([(1, batch[1]), (2, batch[2])]))  # rows join a running batch
    while engine.rows:
        done.update(engine.step([]))
    assert [done[i].routed_experts for i in range(3)] == [g.routed_experts for g in expected]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_replay_of_same_weight_records_changes_nothing_and_agrees_fully(kind):
    model = tiny(kind)
    batch = jobs()
    t = collate(rows_of(batch, generate(model, batch)), 0)
    stats = measure_routing(model, t["input_ids"], t["attention_mask"], t["routed_experts"], t["behaviour_logprobs"],
                            t["loss_mask"])
    assert stats[m.ROUTING_AGREEMENT] == 1.0 and stats[m.ROUTING_ROUTER_AGREEMENT] == 1.0
    assert stats[m.ROUTING_GAP_REPLAY] == stats[m.ROUTING_GAP_FREE] < 1e-5  # same experts, same weights, same sums


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bf16_generation_mismatch_is_measured_and_replay_shrinks_it(kind):
    """Generation in bf16, training in fp32 (same weights): some routing flips; replay removes them."""
    train = tiny(kind)
    infer = tiny(kind, torch.bfloat16)
    batch = jobs(4, 12)
    t = collate(rows_of(batch, generate(infer, batch)), 0)
    stats = measure_routing(train, t["input_ids"], t["attention_mask"], t["routed_experts"], t["behaviour_logprobs"],
                            t["loss_mask"])
    assert stats[m.ROUTING_AGREEMENT] == 1.0
    assert stats[m.ROUTING_ROUTER_AGREEMENT] < 1.0  # the bf16 forward chose other experts somewhere
    assert 0 < stats[m.ROUTING_GAP_REPLAY] < stats[m.ROUTING_GAP_FREE]


MODELS: dict[str, object] = {}
"""One model per kind for the property test (hypothesis re-runs the body many times)."""


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_replayed_selection_equals_random_records_exactly(kind, data):
    if kind not in MODELS:
        MODELS[kind] = tiny(kind)
    model = MODELS[kind]
    length = data.draw(st.integers(3, 10))
    layers, experts = (2, 8) if kind == "kimi" else (3, 8)
    routed = torch.full((1, length, layers, 2), -1, dtype=torch.long)  # (B, T, L, k)
    recorded = data.draw(st.lists(st.booleans(), min_size=length, max_size=length))
    for t in range(1, length):  # token 0 is never sampled
        if recorded[t]:
            for layer in range(layers):
                routed[0, t, layer] = torch.tensor(data.draw(st.permutations(range(experts)))[:2])
    ids = torch.randint(3, VOCAB, (1, length))
    with torch.no_grad(), routing_trace(model, routed, replay=True) as hooks:
        model(input_ids=ids)
    assert hooks is not None
    for layer, forced in enumerate(forced_routing(routed)):
        take = forced[:, 0] >= 0
        used, natural = hooks.used[layer], hooks.natural[layer]
        assert used is not None and natural is not None
        assert torch.equal(used[take], forced[take])  # the recorded experts, slot for slot
        assert torch.equal(used[~take], natural[~take])  # the rest routed by the training router


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gradients_reach_the_router_under_replay(kind):
    model = tiny(kind).train()
    batch = jobs(2)
    t = collate(rows_of(batch, generate(model.eval(), batch)), 0)
    model.train()
    with routing_trace(model, t["routed_experts"], replay=True):
        logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
    logits.log_softmax(-1)[..., 5].sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith("mlp.gate.weight")]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0 for g in grads)


def test_update_reports_agreement_and_both_gaps():
    train, infer = tiny("kimi"), tiny("kimi", torch.bfloat16)
    batch = jobs(4, 8)
    rows = rows_of(batch, generate(infer, batch))
    data = make_batch(rows, 0, advantages=[1.0, -1.0, 0.5, -0.5], rewards=[1.0, 0.0, 1.0, 0.0])
    optimizer = torch.optim.SGD(train.parameters(), lr=1e-3)
    stats = update_policy(train, optimizer, data, LossSettings(routing_replay=True), minibatch_size=4,
                          micro_batch_size=2).metrics()
    assert math.isclose(stats[m.ROUTING_AGREEMENT], 1.0)
    assert math.isclose(stats[m.ROUTING_LAYER_AGREEMENT.format(layer=1)], 1.0)
    assert stats[m.ROUTING_ROUTER_AGREEMENT] < 1.0
    assert 0 < stats[m.ROUTING_GAP_REPLAY] < stats[m.ROUTING_GAP_FREE]


def test_rows_carry_routing_aligned_with_tokens_and_storage_round_trips_it(tmp_path):
    r0, r1 = [[[1, 2]], [[3, 4]]], [[[5, 6]], [[7, 0]]]
    t0 = TurnRecord(text="a", prompt_token_ids=[1, 2], token_ids=[3, 9], logprobs=[-0.5, -0.1], routed_experts=r0)
    t1 = TurnRecord(text="b", prompt_token_ids=[1, 2, 3, 9, 4, 5], token_ids=[6, 9], logprobs=[-0.2, -0.3],
                    routed_experts=r1)
    episode = Episode(id="e", env_id="x", task=Task(id="t", instruction="i"), seed=0, turns=[t0, t1],
                      stop_reason=StopReason.ANSWERED)
    row, = episode_to_rows(episode)
    assert row.routed_experts == [[], [], *r0, [], [], *r1]
    tensor = collate([row], 0)["routed_experts"]  # (1, 8, 1, 2)
    assert tensor.shape == (1, 8, 1, 2) and tensor[0, 2].tolist() == [[1, 2]] and tensor[0, 4].tolist() == [[-1, -1]]
    for suffix in (".jsonl", ".parquet"):
        path = save_episodes([episode], tmp_path / f"episodes{suffix}")
        assert load_episodes(path)[0].turns[1].routed_experts == r1


def dense_model():
    from transformers import Qwen3Config

    return AutoModelForCausalLM.from_config(Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                                        num_hidden_layers=1, num_attention_heads=2,
                                                        num_key_value_heads=1, head_dim=16))


def test_a_model_whose_router_cannot_be_replayed_fails_before_any_work():
    from transformers import Qwen2MoeConfig

    from toolgym.policies.hf_policy import HFPolicy

    dense = dense_model()
    with pytest.raises(RoutingError, match=r"algorithm\.routing_replay.*no MoE router.*turn algorithm\.routing_replay off"):
        check_replayable(dense)
    unknown = AutoModelForCausalLM.from_config(Qwen2MoeConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                                              moe_intermediate_size=16, num_hidden_layers=1,
                                                              num_attention_heads=2, num_key_value_heads=1,
                                                              num_experts=4, num_experts_per_tok=2))
    with pytest.raises(RoutingError, match=r"Qwen2MoeTopKRouter.*cannot replay.*known: DeepseekV3TopkRouter"):
        check_replayable(unknown)
    with pytest.raises(RoutingError, match="record_routing: .* no MoE router"):  # before the tokenizer is read
        HFPolicy(dense, tokenizer=None, record_routing=True)


def test_trainer_with_replay_on_a_dense_model_fails_at_construction():
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.grpo import GRPOTrainer

    cfg = TrainConfig.from_dict({"algorithm": {"routing_replay": True}, "model": {"tiny": "kimi"},
                                 "run": {"tensorboard": False, "plots": False}})
    with pytest.raises(RoutingError, match=r"algorithm\.routing_replay"):
        GRPOTrainer(cfg, dense_model(), tokenizer=None)


def test_grpo_iteration_records_replays_and_reports_routing():
    """The whole path: the sampler records, the loop keeps it on turns, rows carry it, the update replays it."""
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = TrainConfig.from_dict({
        "model": {"tiny": "kimi"},
        "algorithm": {"group_size": 2, "routing_replay": True, "filter_zero_variance": False},
        "rollout": {"tasks_per_iteration": 1, "max_new_tokens": 6},
        "optim": {"lr": 1e-3, "minibatch_size": 2, "micro_batch_size": 2},
        "run": {"iterations": 1, "tensorboard": False, "plots": False},
    })
    model, tokenizer = load_policy(cfg)
    trainer = build_trainer(cfg, model, tokenizer)
    row = trainer.iteration()
    trainer.close()
    assert row[m.ROWS] > 0
    assert row[m.ROUTING_AGREEMENT] == pytest.approx(1.0) and row[m.ROUTING_RECORDED_FRAC] == pytest.approx(1.0)
    assert row[m.ROUTING_ROUTER_AGREEMENT] == pytest.approx(1.0)  # same weights, fp32: generation agrees
    assert row[m.ROUTING_GAP_REPLAY] < 1e-4 and row[m.ROUTING_GAP_FREE] < 1e-4


def test_serve_returns_the_routed_experts_the_local_policy_records():
    import asyncio

    import httpx

    pytest.importorskip("fastapi")
    from toolgym.envs.types import UserMessage
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model
    from toolgym.policies.openai_policy import OpenAIPolicy
    from toolgym.policies.serve import serve_in_thread
    from toolgym.policy import PolicyRequest

    policy = HFPolicy.from_pretrained(cached_tiny_model("qwen3"), record_routing=True)
    prompt = list(range(10, 30))
    job = GenerationJob(prompt_ids=prompt, seed=7, sampling=SamplingParams(max_new_tokens=5, temperature=0))
    local, = asyncio.run(policy.generate_ids([job]))
    request = PolicyRequest(episode_id="e", messages=[UserMessage(content="convert 3 km to m")], seed=7,
                            sampling=SamplingParams(max_new_tokens=5, temperature=0))
    direct, = asyncio.run(policy.generate([request]))
    with serve_in_thread(policy, max_batch=4, wait_ms=5) as url:
        body = {"model": "m", "prompt": prompt, "max_tokens": 5, "temperature": 0, "seed": 7, "return_token_ids": True}
        choice = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["choices"][0]
        remote, = asyncio.run(OpenAIPolicy(url).generate([request]))  # the client reads them onto the turn
    policy.close()
    assert not isinstance(local, Exception) and local.routed_experts is not None
    assert choice["token_ids"] == local.token_ids and choice["routed_experts"] == local.routed_experts
    assert direct.routed_experts is not None and remote.routed_experts == direct.routed_experts


def test_replay_with_the_ppo_trainer_is_refused_by_the_config():
    from toolgym.errors import ConfigError
    from toolgym.trainers.config import TrainConfig

    with pytest.raises(ConfigError, match=r"algorithm\.routing_replay is not wired into the PPO trainer.*name: grpo"):
        TrainConfig.from_dict({"algorithm": {"name": "ppo", "loss": "grpo", "routing_replay": True, "value_model": "head"}})
