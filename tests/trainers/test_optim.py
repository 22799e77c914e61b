"""AdamW and MuonClip: every parameter has one optimizer, Muon orthogonalizes each expert slice."""

from __future__ import annotations

from copy import deepcopy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from toolgym.trainers.optim import MuonClip, build_optimizer, param_plan

KINDS = ["kimi", "qwen3"]



def tiny(kind: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import model_config

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model_config(kind, "tiny", vocab_size=300))


def random_grads(model, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


@pytest.mark.parametrize("kind", KINDS)
def test_plan_gives_every_parameter_one_role(kind):
    model = tiny(kind)
    plan = param_plan(model)
    assert set(plan) == {n for n, _ in model.named_parameters()}
    assert plan["model.embed_tokens.weight"] == plan["lm_head.weight"] == "adamw_decay"
    assert plan["model.layers.1.mlp.gate.weight"] == "adamw_decay"  # router: AdamW (see plan.py)
    assert plan["model.layers.1.mlp.experts.gate_up_proj"] == plan["model.layers.1.mlp.experts.down_proj"] == "muon_per_expert"
    assert plan["model.norm.weight"] == "adamw_no_decay"
    attn = "q_b_proj" if kind == "kimi" else "q_proj"
    assert plan[f"model.layers.0.self_attn.{attn}.weight"] == "muon"
    for name, role in plan.items():
        ndim = dict(model.named_parameters())[name].ndim
        assert (role == "muon_per_expert") == (ndim == 3) and (role == "adamw_no_decay") == (ndim == 1)


@pytest.mark.parametrize("kind", KINDS)
def test_muonclip_covers_each_parameter_once_and_updates_every_expert_slice(kind):
    model = tiny(kind)
    opt = MuonClip(model, lr=1e-2, weight_decay=0.0)
    params = dict(model.named_parameters())
    plan = param_plan(model)
    muon = opt._muon.param_groups[0]["params"]
    adamw = [p for g in opt._adamw.param_groups for p in g["params"]]
    stacks = [params[n] for n, r in plan.items() if r == "muon_per_expert"]
    plain = [params[n] for n, r in plan.items() if r == "muon"]
    views = muon[len(plain):]
    assert [id(p) for p in muon[: len(plain)]] == [id(p) for p in plain]
    assert len(views) == sum(s.shape[0] for s in stacks)  # one 2-D view per expert
    slots = {(s.data_ptr() + e * s.stride(0) * s.element_size(), tuple(s.shape[1:])) for s in stacks for e in range(s.shape[0])}
    assert {(v.data_ptr(), tuple(v.shape)) for v in views} == slots  # the views are the stacks' own slices
    ids = [id(p) for p in plain + stacks + adamw]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in params.values()}  # none left out, none twice
    before = {n: p.detach().clone() for n, p in params.items()}
    random_grads(model)
    opt.step()
    for name, p in params.items():
        changed = (p.detach() - before[name]).flatten(1) if p.ndim == 3 else (p.detach() - before[name])
        if p.ndim == 3:
            assert (changed.abs().amax(dim=1) > 0).all(), f"an expert slice of {name} did not move"
        else:
            assert changed.abs().max() > 0, f"{name} did not move"


def test_each_expert_slice_gets_its_own_newton_schulz_update():
    from torch.optim._muon import _zeropower_via_newtonschulz

    model = tiny("qwen3")
    stack = model.model.layers[0].mlp.experts.down_proj  # (E, hidden, moe_intermediate)
    before = stack.detach().clone()
    lr, momentum = 1e-2, 0.95
    opt = MuonClip(model, lr=lr, weight_decay=0.0, momentum=momentum, nesterov=False)
    random_grads(model)
    grad = stack.grad.clone()
    opt.step()
    out_dim, in_dim = stack.shape[1:]
    adjusted = lr * 0.2 * max(out_dim, in_dim) ** 0.5  # Moonshot RMS matching
    for e in range(stack.shape[0]):
        expected = -adjusted * _zeropower_via_newtonschulz((1 - momentum) * grad[e], (3.4445, -4.775, 2.0315), 5, 1e-7)
        torch.testing.assert_close(stack.detach()[e] - before[e], expected.float(), rtol=1e-2, atol=1e-6)
        singular = torch.linalg.svdvals((stack.detach()[e] - before[e]) / adjusted)
        assert singular.min() > 0.3 and singular.max() < 1.3  # orthogonalized: all directions move alike


def test_adamw_half_matches_torch_adamw():
    model, twin = tiny("kimi"), tiny("kimi")
    opt = MuonClip(model, lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW([twin.model.embed_tokens.weight], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    for seed in (1, 2):
        random_grads(model, seed)
        random_grads(twin, seed)
        opt.step()
        ref.step()
    torch.testing.assert_close(model.model.embed_tokens.weight, twin.model.embed_tokens.weight)


@pytest.mark.parametrize("kind", ["adamw", "muonclip"])
def test_state_dict_round_trip_and_scheduler(kind):
    model, twin = tiny("qwen3"), tiny("qwen3")
    opt = build_optimizer(model, kind, lr=1e-2, qk_clip_tau=None)
    random_grads(model, 1)
    opt.step()
    twin.load_state_dict(model.state_dict())
    copy = build_optimizer(twin, kind, lr=1e-2, qk_clip_tau=None)
    copy.load_state_dict(deepcopy(opt.state_dict()))  # as torch.save/load would: no shared moment tensors
    for m, o in ((model, opt), (twin, copy)):
        random_grads(m, 2)
        o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    scheduler = torch.optim.lr_scheduler.LambdaLR(copy, lambda step: 0.5)
    assert all(g["lr"] == pytest.approx(5e-3) for g in copy.param_groups)
    if kind == "muonclip":
        assert copy._muon.param_groups[0]["lr"] == pytest.approx(5e-3) and copy._adamw.param_groups[0]["lr"] == pytest.approx(5e-3)
    copy.step()
    scheduler.step()


@pytest.mark.parametrize("kind", KINDS)
def test_muonclip_trains_a_tiny_moe(kind):
    model = tiny(kind)
    opt = build_optimizer(model, "muonclip", lr=3e-3, qk_clip_tau=100.0)
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    router = model.model.layers[1].mlp.gate.weight.detach().clone()
    losses = []
    for _ in range(3):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(router, model.model.layers[1].mlp.gate.weight)
    assert opt.last_qk_report is not None and opt.last_qk_report.clipped_heads == 0


def test_bad_optimizer_settings_name_the_field():
    model = tiny("qwen3")
    with pytest.raises(ValueError, match="'adamw' or 'muonclip'"):
        build_optimizer(model, "sgd", lr=1e-3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        build_optimizer(model, "adamw", lr=0.0)
    with pytest.raises(ValueError, match="not a MuonClip state dict"):
        MuonClip(model, lr=1e-3).load_state_dict({"state": {}})
