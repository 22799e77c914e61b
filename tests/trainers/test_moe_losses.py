"""Router load-balancing loss and expert-load metrics on both tiny MoE kinds."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.trainers.moe import (
    AUX_LOSS,
    CV_MAX,
    DEAD_TOTAL,
    RouterSpec,
    expert_load_metrics,
    load_balancing_loss,
    router_spec,
    select_experts,
)

L3 = math.log(3)



def tiny(kind: str, **overrides):
    from transformers import AutoModelForCausalLM

    from toolgym.trainers.models import model_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(model_config(kind, "tiny", vocab_size=300, **overrides))


def test_balancing_loss_by_hand():
    logits = torch.tensor([[0.0, L3], [0.0, L3], [L3, 0.0], [0.0, L3]])  # probs (.25, .75) or (.75, .25)
    spec = RouterSpec("softmax", top_k=1, num_experts=2, layers=(0,))
    # f = (1/4, 3/4); P = (0.375, 0.625); loss = 2 * (0.25*0.375 + 0.75*0.625)
    assert float(load_balancing_loss([logits], spec)) == pytest.approx(1.125)
    # masking the third token out leaves three identical tokens: f = (0, 1), P = (.25, .75)
    assert float(load_balancing_loss([logits], spec, mask=torch.tensor([[1, 1], [0, 1]]))) == pytest.approx(1.5)
    metrics = expert_load_metrics([logits, logits], RouterSpec("softmax", 1, 2, (1, 2)))
    assert metrics["moe/layer1/cv"] == pytest.approx(0.5)  # counts (1, 3): std 1 / mean 2
    assert metrics["moe/layer2/max_min"] == pytest.approx(3.0)
    assert metrics[DEAD_TOTAL] == 0 and metrics[CV_MAX] == pytest.approx(0.5)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert metrics["moe/layer1/entropy"] == pytest.approx(entropy, rel=1e-5)


def test_sigmoid_router_normalizes_scores_and_counts_dead_experts():
    logits = torch.tensor([[0.0, 0.0, -30.0], [0.0, 0.0, -30.0]])  # expert 2 never chosen
    spec = RouterSpec("sigmoid", top_k=2, num_experts=3, layers=(1,))
    # f = (.5, .5, 0); P = (.5, .5, ~0) after normalizing sigmoid scores per token
    assert float(load_balancing_loss([logits], spec)) == pytest.approx(3 * 0.5, rel=1e-6)
    metrics = expert_load_metrics([logits], spec)
    assert metrics["moe/layer1/dead"] == 1 and metrics["moe/layer1/max_min"] == 2.0


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_balancing_loss_bounds_and_mask_equals_subset(e, k, n, seed):
    k = min(k, e)
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, e, generator=gen) * 3
    keep = torch.rand(n, generator=gen) > 0.3
    for score in ("softmax", "sigmoid"):
        spec = RouterSpec(score, k, e, (0,))
        loss = float(load_balancing_loss([logits], spec))
        assert 0 < loss <= e + 1e-4
        if keep.any():
            masked = load_balancing_loss([logits], spec, mask=keep[None])
            torch.testing.assert_close(masked, load_balancing_loss([logits[keep]], spec))
    collapsed = torch.zeros(n, e)
    collapsed[:, 0] = 40.0  # every token sends everything to expert 0
    assert float(load_balancing_loss([collapsed], RouterSpec("softmax", 1, e, (0,)))) == pytest.approx(e, rel=1e-4)


def test_matches_transformers_switch_loss_for_one_layer():
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    logits = torch.randn(20, 8, generator=torch.Generator().manual_seed(1))
    ours = load_balancing_loss([logits], RouterSpec("softmax", 2, 8, (0,)))
    theirs = load_balancing_loss_func((logits,), num_experts=8, top_k=2)
    torch.testing.assert_close(theirs, 2 * ours)  # transformers' f sums to top_k, ours to 1


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_recomputed_selection_is_what_the_routers_chose(kind):
    model = tiny(kind)
    spec = router_spec(model)
    if kind == "kimi":
        for bias in spec.biases:  # a non-zero score correction must change the choice, as in DeepSeek-V3
            bias.copy_(torch.randn(bias.shape) * 0.05)
    chosen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: chosen.append(out[2]))
             for n, m in model.named_modules() if n.endswith("mlp.gate")]
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    out = model(ids, output_router_logits=True)
    for h in hooks:
        h.remove()
    assert spec.layers == ((1, 2) if kind == "kimi" else (0, 1, 2))
    assert len(out.router_logits) == len(chosen) == len(spec.layers)
    for layer, (logits, picked) in enumerate(zip(out.router_logits, chosen, strict=True)):
        assert torch.equal(select_experts(logits, spec, layer).sort(-1).values, picked.sort(-1).values)


def test_group_limited_selection_matches_the_deepseek_router():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    from toolgym.trainers.models import model_config

    config = model_config("kimi", "tiny", vocab_size=300, n_group=4, topk_group=2)
    router = DeepseekV3TopkRouter(config)
    torch.nn.init.normal_(router.weight, std=0.5)
    router.e_score_correction_bias.copy_(torch.randn(8) * 0.1)
    logits, _, picked = router(torch.randn(30, 128, generator=torch.Generator().manual_seed(2)))
    spec = RouterSpec("sigmoid", 2, 8, (0,), (router.e_score_correction_bias,), n_group=4, topk_group=2)
    assert torch.equal(select_experts(logits, spec).sort(-1).values, picked.sort(-1).values)


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_aux_loss_trains_the_routers_toward_balance(kind):
    model = tiny(kind)
    spec = router_spec(model)
    gates = [m.weight for n, m in model.named_modules() if n.endswith("mlp.gate")]
    with torch.no_grad():
        for w in gates:  # start unbalanced: sharp routers
            w.mul_(40.0)
    ids = torch.randint(0, 300, (3, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    opt = torch.optim.Adam(gates, lr=0.1)
    first = None
    for _ in range(6):
        out = model(ids, attention_mask=mask, output_router_logits=True)
        loss = load_balancing_loss(out.router_logits, spec, mask=mask)
        assert torch.isfinite(loss)
        first = first if first is not None else expert_load_metrics(out.router_logits, spec, mask=mask)
        opt.zero_grad()
        loss.backward()
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in gates)
        opt.step()
    last = expert_load_metrics(out.router_logits, spec, mask=mask)
    assert last[AUX_LOSS] < first[AUX_LOSS]  # the balancing loss is what the routers descend


def test_errors_name_the_fix():
    spec = RouterSpec("softmax", 1, 2, (0, 1))
    with pytest.raises(ValueError, match="output_router_logits=True"):
        load_balancing_loss(None, spec)
    with pytest.raises(ValueError, match="2 MoE layers"):
        load_balancing_loss([torch.zeros(3, 2)], spec)
    with pytest.raises(ValueError, match="attention mask of the same forward"):
        load_balancing_loss([torch.zeros(3, 2)] * 2, spec, mask=torch.ones(2, 2))
