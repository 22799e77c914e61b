"""The shared policy-update step: accumulation invariance, skip-on-NaN, a real MoE training step."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.trainers import metrics as m
from toolgym.trainers.batch import Batch
from toolgym.trainers.grpo import LossSettings, accumulate, update_policy

VOCAB = 300


@pytest.fixture(scope="module")
def models():
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import model_config

    out = {}
    for kind in ("kimi", "qwen3"):
        torch.manual_seed(0)
        out[kind] = AutoModelForCausalLM.from_config(model_config(kind, "tiny", vocab_size=VOCAB))
    return out


def synthetic_batch(model, rows: int = 8, width: int = 12, seed: int = 0, per_token_adv: bool = False) -> Batch:
    """Ragged right-padded rows with behaviour log-probs near the model's own (ratios != 1)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, width), generator=g)  # (B, T)
    lengths = torch.randint(width // 2, width + 1, (rows,), generator=g)  # (B,)
    attention = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (B, T)
    loss_mask = ((torch.rand(rows, width, generator=g) < 0.6) & attention.bool()).float()
    loss_mask[:, 0] = 0
    loss_mask[torch.arange(rows), lengths - 1] = 1  # every row has a sampled token
    ids = torch.where(attention.bool(), ids, torch.zeros_like(ids))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    old = torch.zeros(rows, width)
    old[:, 1:] = (logp + 0.3 * torch.randn(rows, width - 1, generator=g)) * loss_mask[:, 1:]
    rewards = torch.rand(rows, generator=g)
    adv = torch.randn(rows, width, generator=g) if per_token_adv else torch.randn(rows, generator=g)
    return Batch(input_ids=ids, attention_mask=attention, loss_mask=loss_mask, old_logp=old, advantages=adv,
                 rewards=rewards, baselines=torch.full((rows,), float(rewards.mean())))


def grads_after(model, batch: Batch, settings: LossSettings, micro: int, ref=None):
    """Accumulated gradients by parameter name, and the summed stats, for one micro-batch size."""
    model.zero_grad(set_to_none=True)
    stats, reason = accumulate(model, batch, settings, micro, ref_model=ref)
    assert reason is None
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, stats


def assert_same_grads(whole: dict, pieces: dict, rel: float = 1e-5) -> None:
    assert whole.keys() == pieces.keys() and whole
    scale = max(float(g.abs().max()) for g in whole.values())
    assert scale > 0
    for name, g in whole.items():
        assert torch.allclose(g, pieces[name], atol=rel * max(scale, 1.0), rtol=1e-4), name


AUX = 0.5
"""Far above the 0.001 default, so a split-dependent router loss would show in the gradients."""


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
@pytest.mark.parametrize("loss", ["grpo", "dapo", "dr_grpo", "k2"])
def test_accumulation_1x8_equals_8x1(models, kind, loss):
    model = models[kind]
    batch = synthetic_batch(model, seed=1)
    settings = LossSettings(loss=loss, clip_low=0.2, clip_high=0.28, constant=16.0, aux_weight=AUX)
    whole, whole_stats = grads_after(model, batch, settings, micro=8)
    pieces, piece_stats = grads_after(model, batch, settings, micro=1)
    assert_same_grads(whole, pieces)
    for key in (m.LOSS, m.POLICY_LOSS, m.AUX_LOSS):
        assert piece_stats[key] == pytest.approx(whole_stats[key], rel=1e-5, abs=1e-7), key
    if loss == "grpo":  # the router loss is really in these gradients
        plain, _ = grads_after(model, batch, LossSettings(loss=loss, clip_high=0.28, aux_weight=0.0), micro=8)
        routers = [n for n in whole if n.endswith("mlp.gate.weight")]
        assert routers and all(not torch.allclose(whole[n], plain[n]) for n in routers)


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
@settings(max_examples=3, deadline=None)
@given(micro=st.sampled_from([2, 3, 5]), seed=st.integers(0, 10_000), kl=st.sampled_from([0.0, 0.1]),
       aux=st.sampled_from([0.001, AUX]))
def test_accumulation_invariant_for_any_split(models, kind, micro, seed, kl, aux):
    model = models[kind]
    batch = synthetic_batch(model, seed=seed, per_token_adv=True)
    settings = LossSettings(loss="dapo", clip_high=0.28, kl_beta=kl, aux_weight=aux)
    ref = model if kl else None
    whole, whole_stats = grads_after(model, batch, settings, 8, ref)
    pieces, piece_stats = grads_after(model, batch, settings, micro, ref)
    assert_same_grads(whole, pieces)
    assert piece_stats[m.AUX_LOSS] == pytest.approx(whole_stats[m.AUX_LOSS], rel=1e-5)


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_training_step_changes_every_part_of_the_moe(models, kind):
    import copy

    model = copy.deepcopy(models[kind])
    batch = synthetic_batch(model, seed=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    settings = LossSettings(loss="grpo", aux_weight=0.01)
    stats = update_policy(model, optimizer, batch, settings, minibatch_size=8, micro_batch_size=4,
                          generator=torch.Generator().manual_seed(0))
    out = stats.metrics()
    assert out[m.STEPS] == 1 and math.isfinite(out[m.AUX_LOSS]) and out[m.AUX_LOSS] > 0
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    routers = [n for n in before if n.endswith("mlp.gate.weight")]
    assert routers and set(routers) <= changed, "router weights did not move"
    assert any(".experts." in n for n in changed) and any("embed_tokens" in n for n in changed)
    assert any(k.startswith("moe/layer") and k.endswith("/entropy") for k in out)


def test_nonfinite_loss_skips_the_step_with_a_counted_reason(models):
    import copy

    model = copy.deepcopy(models["kimi"])
    batch = synthetic_batch(model, seed=4)
    batch.advantages[2] = float("nan")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = update_policy(model, optimizer, batch, LossSettings(), minibatch_size=8, micro_batch_size=2)
    out = stats.metrics()
    assert out[m.SKIPPED_PREFIX + "nonfinite_loss"] == 1 and out[m.STEPS] == 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_exploding_gradient_skips_the_step(models):
    import copy

    model = copy.deepcopy(models["kimi"])
    batch = synthetic_batch(model, seed=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    settings = LossSettings(skip_grad_norm=1e-9)  # any real gradient is "exploding"
    stats = update_policy(model, optimizer, batch, settings, minibatch_size=4, micro_batch_size=4)
    out = stats.metrics()
    assert out[m.SKIPPED_PREFIX + "exploding_grad"] == 2 and out[m.STEPS] == 0
