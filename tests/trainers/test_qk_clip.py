"""QK-Clip: measured logits are the attention's own, rescaling caps them at τ on both model kinds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from toolgym.trainers.optim import QK_MAX_LOGIT, QKClip, build_optimizer

KINDS = ["kimi", "qwen3"]
TAU = {"kimi": 0.5, "qwen3": 4.5}
"""Thresholds the high-learning-rate run below crosses within a few steps (maxima after step 1: ~0.11 and ~3.0)."""
FLOAT_SLACK = 1 + 1e-5
"""float32 rounding of a rescaled logit; the clip itself aims at exactly τ."""



def tiny(kind: str, **overrides):
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import model_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(model_config(kind, "tiny", vocab_size=300, **overrides))


def batch(seed: int = 0):
    ids = torch.randint(1, 300, (2, 12), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding on one row
    return ids, mask


@pytest.mark.parametrize("kind", KINDS)
def test_measured_logits_are_the_attention_kernels_logits(kind):
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    seen = {}

    def capture(module, query, key, value, attention_mask, scaling=None, **kwargs):
        keys = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        logits = (query.float() @ keys.float().transpose(-1, -2)) * scaling  # (B, H, T, T)
        steps = logits.shape[-1]
        real = pad_mask.bool()
        allowed = torch.ones(steps, steps, dtype=torch.bool).tril() & real[:, None, None, :] & real[:, None, :, None]
        seen[module.layer_idx] = logits.masked_fill(~allowed, float("-inf")).amax(dim=(0, 2, 3))
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    AttentionInterface.register("toolgym_capture", capture)
    AttentionMaskInterface.register("toolgym_capture", sdpa_mask)  # the padding mask reaches the kernel
    model = tiny(kind)
    model.set_attn_implementation("toolgym_capture")
    ids, pad_mask = batch()
    measured = QKClip(model, tau=1.0).measure(ids, pad_mask)
    assert sorted(measured) == sorted(seen) == [0, 1, 2]
    for layer, heads in measured.items():
        torch.testing.assert_close(torch.tensor(heads), seen[layer], rtol=1e-5, atol=1e-6)


def test_mla_clip_scales_only_the_hot_heads_specific_rows():
    model = tiny("kimi")
    ids, mask = batch()
    qk = QKClip(model, tau=1.0)
    before = qk.measure(ids, mask)[0]
    tau = sorted(before)[2] * 0.999  # two of the four heads of layer 0 are above τ
    qk.tau = tau
    attn = model.model.layers[0].self_attn
    weights = {n: p.detach().clone() for n, p in attn.named_parameters()}
    hot_anywhere = sum(v > tau for heads in qk.measure(ids, mask).values() for v in heads)
    model(ids, attention_mask=mask)  # a grad-enabled (training) forward is observed
    report = qk.clip()
    assert report.max_logits[0] == pytest.approx(before, rel=1e-6)
    after = qk.measure(ids, mask)[0]
    for h, (old, new) in enumerate(zip(before, after, strict=True)):
        assert new == pytest.approx(min(old, tau), rel=1e-4), f"head {h}"  # exact per head (layer 0 input is unchanged)
    hot = [h for h, v in enumerate(before) if v > tau]
    nope, dq, dk = attn.qk_nope_head_dim, attn.qk_head_dim, attn.qk_nope_head_dim + attn.v_head_dim
    q_now, kv_now = attn.q_b_proj.weight.detach(), attn.kv_b_proj.weight.detach()
    for h in range(4):
        gamma = tau / before[h] if h in hot else 1.0
        q_old, kv_old = weights["q_b_proj.weight"], weights["kv_b_proj.weight"]
        torch.testing.assert_close(q_now[h * dq : h * dq + nope], q_old[h * dq : h * dq + nope] * gamma**0.5)
        torch.testing.assert_close(q_now[h * dq + nope : (h + 1) * dq], q_old[h * dq + nope : (h + 1) * dq] * gamma)
        torch.testing.assert_close(kv_now[h * dk : h * dk + nope], kv_old[h * dk : h * dk + nope] * gamma**0.5)
        assert torch.equal(kv_now[h * dk + nope : (h + 1) * dk], kv_old[h * dk + nope : (h + 1) * dk])  # values untouched
    for name in ("kv_a_proj_with_mqa.weight", "q_a_proj.weight", "o_proj.weight"):  # the shared rotary key lives in kv_a
        assert torch.equal(dict(attn.named_parameters())[name], weights[name]), name
    assert len(hot) == 2 and report.clipped_heads == hot_anywhere  # every layer's hot heads, layer 0's two among them


def test_mla_without_query_low_rank_clips_q_proj():
    model = tiny("kimi", q_lora_rank=None)  # DeepSeek-V2-Lite style: one q_proj, no q_a/q_b
    ids, mask = batch()
    qk = QKClip(model, tau=1.0)
    before = qk.measure(ids, mask)
    qk.tau = tau = max(before[0]) * 0.5
    report = qk.clip_on(ids, mask)
    assert report.clipped_heads > 0
    assert max(max(v) for v in qk.measure(ids, mask).values()) <= tau * FLOAT_SLACK


def test_qwen3_q_k_rows_cannot_clip_so_the_norm_weights_do():
    model = tiny("qwen3")
    ids, mask = batch()
    qk = QKClip(model, tau=1.0)
    before = qk.measure(ids, mask)[0]
    attn = model.model.layers[0].self_attn
    with torch.no_grad():  # the MHA recipe, W_q and W_k rows of head 0 by sqrt(0.25): the per-head RMSNorm undoes it
        attn.q_proj.weight[: attn.head_dim] *= 0.5
        attn.k_proj.weight[: attn.head_dim] *= 0.5
    assert qk.measure(ids, mask)[0] == pytest.approx(before, rel=1e-3)
    tau = max(before) * 0.5
    qk.tau = tau
    report = qk.clip_on(ids, mask)
    after = qk.measure(ids, mask)
    gamma = tau / max(before)
    assert after[0] == pytest.approx([v * gamma for v in before], rel=1e-4)  # the layer scales at its hottest head's rate
    assert max(max(v) for v in after.values()) <= tau * FLOAT_SLACK
    assert report.clipped_heads >= sum(v > tau for v in before)


def run(kind: str, steps: int, tau: float | None, timing: str = "observed"):
    """High-learning-rate MuonClip training on one memorized batch; the max logit after every step."""
    model = tiny(kind)
    ids, mask = batch()
    opt = build_optimizer(model, "muonclip", lr=0.05, weight_decay=0.0, qk_clip_tau=tau, qk_clip_timing=timing)
    probe = QKClip(model, tau=1.0)
    probe.mode = "off"  # a bystander: measures only when asked
    maxima, clipped = [], 0
    for _ in range(steps):
        loss = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if opt.last_qk_report is not None:
            clipped += opt.last_qk_report.clipped_heads
            assert opt.last_qk_report.metrics()[QK_MAX_LOGIT] > 0
        maxima.append(max(max(v) for v in probe.measure(ids, mask).values()))
    return maxima, clipped


@pytest.mark.parametrize("kind", KINDS)
def test_high_learning_rate_passes_tau_without_qk_clip_and_not_with_it(kind):
    tau, steps = TAU[kind], 6
    free, _ = run(kind, steps, None)
    assert max(free) > tau * 1.1, free
    exact, clipped = run(kind, steps, tau, "remeasure")
    assert all(m <= tau * FLOAT_SLACK for m in exact), exact
    assert clipped > 0
    k2, clipped = run(kind, steps, tau, "observed")  # K2's timing: bounded, one step's growth behind
    assert clipped > 0 and k2[-1] < free[-1]


def test_bad_settings_are_named():
    model = tiny("qwen3")
    with pytest.raises(ValueError, match="tau must be > 0"):
        QKClip(model, tau=0)
    with pytest.raises(ValueError, match="'observed' or 'remeasure'"):
        QKClip(model, tau=1.0, timing="later")
