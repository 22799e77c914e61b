"""Router load-balancing loss and expert-load metrics on both tiny MoE kinds."""

from __future__ import annotations

import math
from typing import Literal

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
    sequence_balance_losses,
)

L3 = math.log(3)


def tiny(kind: Literal["kimi", "qwen3"], **overrides):
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import model_config

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


def two_sequences(score: str):
    """2 sequences x 3 positions x 4 experts; sequence 1's last position is padding.

    Routing probabilities: sequence 0 has (.4, .3, .2, .1) then (.1, .2, .3, .4); sequence 1 has
    (.4, .3, .2, .1) twice. Softmax logits are log p; sigmoid logits give raw scores 2p, which
    normalize back to p.
    """
    a, b, pad = [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.45, 0.05, 0.05, 0.45]
    probs = torch.tensor([a, b, b, a, a, pad])  # (B*T, E) with B=2, T=3
    logits = probs.log() if score == "softmax" else torch.logit(2 * probs)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])  # sequence 0's third token is masked out too
    return logits.requires_grad_(True), mask


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_sequence_wise_loss_by_hand(score):
    logits, mask = two_sequences(score)
    spec = RouterSpec(score, top_k=2, num_experts=4, layers=(0,))
    # sequence 0 picks {0,1} then {2,3}: f = (.25,)*4, P = (.25,)*4 -> L = 4 * 4 * .0625 = 1
    # sequence 1 picks {0,1} twice: f = (.5, .5, 0, 0), P = (.4, .3, .2, .1) -> L = 4 * .35 = 1.4
    per_sequence = sequence_balance_losses([logits], spec, mask=mask)
    torch.testing.assert_close(per_sequence, torch.tensor([1.0, 1.4]))
    loss = load_balancing_loss([logits], spec, mask=mask)
    assert float(loss.detach()) == pytest.approx(1.2, rel=1e-6)  # the Switch loss pooled over all 4 tokens is 1.1
    if score == "softmax":
        # f carries no gradient: dloss/dlogit_j = E/(B n_s) * p_j (f_j - f.p), n_s = 2 tokens.
        # Sequence 0's f is uniform, so f.P = 1/4 whatever the logits: its gradient is 0.
        loss.backward()
        grad = logits.grad
        assert grad is not None
        expected = torch.zeros(6, 4)
        expected[3] = expected[4] = torch.tensor([0.4 * 0.15, 0.3 * 0.15, 0.2 * -0.35, 0.1 * -0.35])
        torch.testing.assert_close(grad, expected)
    else:
        # The score-correction bias changes the picks (f) but not P: sequence 0 picks {3,0} then
        # {3,2}: f = (.25, 0, .25, .5), P uniform -> 1; sequence 1 picks {3,0}: f = (.5, 0, 0, .5) -> 4 * .25 = 1
        biased = RouterSpec("sigmoid", 2, 4, (0,), (torch.tensor([0.0, 0.0, 0.0, 1.0]),))
        torch.testing.assert_close(sequence_balance_losses([logits], biased, mask=mask), torch.tensor([1.0, 1.0]))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(2, 6), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["softmax", "sigmoid"]), st.integers(0, 2**31 - 1))
def test_sequence_loss_ignores_the_rest_of_the_batch_so_any_split_sums_to_the_whole(b, t, e, k, layers, score, seed):
    k = min(k, e)
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(b * t, e, generator=gen) * 2 for _ in range(layers)]
    mask = (torch.rand(b, t, generator=gen) < 0.7).long()
    mask[0, 0] = 1
    spec = RouterSpec(score, k, e, tuple(range(layers)))
    per_sequence = sequence_balance_losses(logits, spec, mask=mask)  # (B,)
    for s in range(b):
        rows = slice(s * t, (s + 1) * t)
        alone = load_balancing_loss([x[rows] for x in logits], spec, mask=mask[s : s + 1])
        torch.testing.assert_close(per_sequence[s], alone if mask[s].any() else torch.tensor(0.0))
    routed = int((mask.sum(1) > 0).sum())
    cut = int(torch.randint(0, b + 1, (), generator=gen))
    parts = [(0, cut), (cut, b)]
    summed = sum(
        load_balancing_loss([x[lo * t : hi * t] for x in logits], spec, mask=mask[lo:hi]) * int((mask[lo:hi].sum(1) > 0).sum())
        for lo, hi in parts if hi > lo
    ) / routed
    torch.testing.assert_close(summed, load_balancing_loss(logits, spec, mask=mask))


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_sft_adds_the_same_router_loss_as_rl(kind):
    from toolgym.trainers.sft import masked_lm_loss

    model = tiny(kind)
    ids = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(4))
    attention = torch.ones_like(ids)
    attention[1, 6:] = 0
    labels = ids.masked_fill(attention == 0, -100)
    plain, _ = masked_lm_loss(model, ids, attention, labels)
    with_aux, _ = masked_lm_loss(model, ids, attention, labels, aux_loss_weight=0.5)
    out = model(input_ids=ids, attention_mask=attention, output_router_logits=True)
    expected = load_balancing_loss(out.router_logits, router_spec(model), mask=attention)
    torch.testing.assert_close(with_aux - plain, 0.5 * expected)


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

    from toolgym.policies.models import model_config

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
    assert first is not None and last[AUX_LOSS] < first[AUX_LOSS]  # the balancing loss is what the routers descend


def test_errors_name_the_fix():
    spec = RouterSpec("softmax", 1, 2, (0, 1))
    with pytest.raises(ValueError, match="output_router_logits=True"):
        load_balancing_loss(None, spec)  # type: ignore[arg-type]  # the error under test
    with pytest.raises(ValueError, match="2 MoE layers"):
        load_balancing_loss([torch.zeros(3, 2)], spec)
    with pytest.raises(ValueError, match="attention mask of the same forward"):
        load_balancing_loss([torch.zeros(3, 2)] * 2, spec, mask=torch.ones(2, 2))
