"""The shared optimizer step, the LR schedule, the per-step policy diagnostics and PPO's value clipping."""

from __future__ import annotations

import ast
import copy
import inspect
import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.trainers import metrics as m
from toolgym.trainers.batch import Batch
from toolgym.trainers.config import TrainConfig
from toolgym.trainers.grpo import GRPOTrainer, LossSettings, accumulate
from toolgym.trainers.ppo import PPOSettings, PPOTrainer
from toolgym.trainers.ppo import accumulate as ppo_accumulate
from toolgym.trainers.rl import approx_kl, token_entropy
from toolgym.trainers.schedule import lr_factor
from toolgym.trainers.step import OptimizerStep
from toolgym.trainers.value import ValueModel

VOCAB = 300


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import model_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(model_config("kimi", "tiny", vocab_size=VOCAB))


def on_policy_batch(model, rows: int = 4, width: int = 10, seed: int = 0) -> Batch:
    """Full-width rows whose behaviour log-probs are the model's own: the policy equals the behaviour policy."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, width), generator=g)  # (B, T)
    attention = torch.ones(rows, width, dtype=torch.long)  # (B, T): full width, so no micro-batch is trimmed
    loss_mask = (torch.rand(rows, width, generator=g) < 0.7).float()
    loss_mask[:, 0], loss_mask[:, -1] = 0, 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    old = torch.zeros(rows, width)
    old[:, 1:] = logp * loss_mask[:, 1:]
    rewards = torch.rand(rows, generator=g)
    return Batch(input_ids=ids, attention_mask=attention, loss_mask=loss_mask, old_logp=old,
                 advantages=torch.randn(rows, generator=g), rewards=rewards, baselines=torch.full((rows,), float(rewards.mean())))


# ---------------------------------------------------------------- diagnostics


def test_on_policy_minibatch_has_zero_approx_kl_and_clip_fraction(model):
    batch = on_policy_batch(model)
    model.zero_grad(set_to_none=True)
    stats, reason = accumulate(model, batch, LossSettings(loss="grpo", clip_low=0.2, clip_high=0.28), micro_batch_size=4)
    model.zero_grad(set_to_none=True)
    assert reason is None
    assert stats[m.APPROX_KL] == pytest.approx(0.0, abs=1e-6) and stats[m.CLIP_FRAC] == 0.0
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        mask = batch.loss_mask[:, 1:]
        expected = float((token_entropy(logits) * mask).sum() / mask.sum())
    assert stats[m.ENTROPY] == pytest.approx(expected, rel=1e-5)
    assert 0 < stats[m.ENTROPY] <= math.log(VOCAB)


def test_off_policy_rows_show_kl_and_clipping(model):
    batch = on_policy_batch(model, seed=1)
    batch.old_logp = batch.old_logp - 0.5 * batch.loss_mask  # every ratio is e^0.5 ≈ 1.65: outside [0.8, 1.28]
    stats, _ = accumulate(model, batch, LossSettings(loss="dapo", clip_high=0.28), micro_batch_size=2)
    model.zero_grad(set_to_none=True)
    assert stats[m.CLIP_FRAC] == pytest.approx(1.0)
    assert stats[m.APPROX_KL] == pytest.approx(math.expm1(0.5) - 0.5, rel=1e-4)


@settings(max_examples=25, deadline=None)
@given(v=st.integers(2, 500), rows=st.integers(1, 3), steps=st.integers(1, 4), scale=st.floats(-50, 50))
def test_entropy_of_a_uniform_distribution_is_log_v(v, rows, steps, scale):
    logits = torch.full((rows, steps, v), scale)  # equal logits: uniform, whatever their value
    torch.testing.assert_close(token_entropy(logits), torch.full((rows, steps), math.log(v)))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_approx_kl_is_zero_on_policy_and_never_negative(data):
    b, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    lp = st.floats(-8, 0, allow_nan=False, width=32)
    logp = torch.tensor(data.draw(st.lists(st.lists(lp, min_size=t, max_size=t), min_size=b, max_size=b)))
    old = torch.tensor(data.draw(st.lists(st.lists(lp, min_size=t, max_size=t), min_size=b, max_size=b)))
    mask = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=t, max_size=t), min_size=b, max_size=b)))
    assert torch.equal(approx_kl(logp, logp, mask), torch.zeros(b, t))
    kl = approx_kl(logp, old, mask)
    assert bool((kl >= 0).all()) and bool((kl[mask == 0] == 0).all())
    garbage = torch.where(mask.bool(), old, torch.full_like(old, -math.inf))  # padding may hold -inf
    assert torch.equal(approx_kl(logp, garbage, mask), kl)


def test_metric_names_are_constants_with_docstrings():
    tree = ast.parse(inspect.getsource(m))
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            after = body[i + 1] if i + 1 < len(body) else None
            assert isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant), f"{node.targets[0].id} has no docstring"
    assert {m.APPROX_KL, m.ENTROPY, m.CLIP_FRAC, m.LR} <= {v for k, v in vars(m).items() if k.isupper()}


# ---------------------------------------------------------------- value clipping


def test_ppo_value_loss_is_clipped_around_the_rollout_values(model):
    """V = 3 now, V_old = 1 at rollout, return 4: clip 0.2 keeps V_old + 0.2 = 1.2 -> ½ (1.2 - 4)² = 3.92."""
    value = ValueModel("head", model)
    with torch.no_grad():
        value.head.proj.bias.fill_(3.0)  # weight is 0: V = 3 everywhere
    batch = on_policy_batch(model, seed=2)
    batch.advantages = torch.zeros(batch.input_ids.shape)
    batch.returns = torch.full(batch.input_ids.shape, 4.0)
    batch.old_values = torch.full(batch.input_ids.shape, 1.0)
    stats = {}
    for clip, expected in ((None, 0.5 * (3 - 4) ** 2), (0.2, 0.5 * (1.2 - 4) ** 2), (5.0, 0.5 * (3 - 4) ** 2)):
        settings_ = PPOSettings(value_clip=clip, value_coef=1.0)
        stats[clip], reason = ppo_accumulate(model, value, batch, settings_, micro_batch_size=2)
        assert reason is None and stats[clip][m.VALUE_LOSS] == pytest.approx(expected, rel=1e-6), clip
    model.zero_grad(set_to_none=True)
    # the clipped term has no gradient through V: the value head's bias gets none from a clipped loss
    value.zero_grad(set_to_none=True)
    ppo_accumulate(model, value, batch, PPOSettings(value_clip=0.2, value_coef=1.0), micro_batch_size=4)
    assert float(value.head.proj.bias.grad.abs().max()) == 0.0
    model.zero_grad(set_to_none=True)


def test_ppo_accumulation_1x4_equals_4x1(model):
    net = copy.deepcopy(model)
    value = ValueModel("head", net)
    batch = on_policy_batch(net, seed=3)
    g = torch.Generator().manual_seed(3)
    batch.old_logp = batch.old_logp + 0.2 * torch.randn(batch.old_logp.shape, generator=g) * batch.loss_mask
    batch.advantages = torch.randn(batch.input_ids.shape, generator=g)
    batch.returns, batch.old_values = torch.randn(batch.input_ids.shape, generator=g), torch.zeros(batch.input_ids.shape)
    settings_ = PPOSettings(aggregation="sequence", value_clip=0.3, aux_weight=0.5)
    grads = []
    for micro in (4, 1):
        net.zero_grad(set_to_none=True)
        value.zero_grad(set_to_none=True)
        ppo_accumulate(net, value, batch, settings_, micro)
        params = [*net.named_parameters(), *value.named_parameters()]
        grads.append({n: p.grad.clone() for n, p in params if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "head.proj.bias" in grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- the shared step and the schedule


def test_ppo_is_a_sibling_not_a_subclass_and_both_use_the_shared_step():
    assert not issubclass(PPOTrainer, GRPOTrainer) and not issubclass(GRPOTrainer, PPOTrainer)
    for cls in (GRPOTrainer, PPOTrainer):
        assert "OptimizerStep(" in inspect.getsource(cls.__init__)
    assert "clip_grad_norm_" not in inspect.getsource(sys.modules[PPOTrainer.__module__])
    assert "clip_grad_norm_" not in inspect.getsource(sys.modules[GRPOTrainer.__module__])


@settings(max_examples=60, deadline=None)
@given(warmup=st.integers(0, 10), total=st.integers(1, 60), final=st.floats(0, 1),
       schedule=st.sampled_from(["constant", "cosine", "linear"]))
def test_lr_factor_warms_up_then_holds_or_decays_to_final(warmup, total, final, schedule):
    factors = [lr_factor(s, warmup, s / total, schedule, final) for s in range(total + 1)]
    assert factors[: min(warmup, total + 1)] == [(s + 1) / warmup for s in range(min(warmup, total + 1))]
    after = factors[warmup:]
    assert all(final - 1e-12 <= f <= 1.0 + 1e-12 for f in after)
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:], strict=False))  # never rises after warmup
    if after and schedule == "constant":
        assert set(after) == {1.0}
    if warmup < total and schedule != "constant":
        assert factors[total] == pytest.approx(final)  # progress 1: exactly the final ratio
    if schedule == "linear" and warmup == 0 and total >= 2:
        assert factors[total // 2] == pytest.approx(final + (1 - final) * (1 - (total // 2) / total))


def test_lr_factor_refuses_an_unknown_schedule():
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor(5, 0, 0.5, "step")  # type: ignore[arg-type]


def test_config_schedule_and_the_step_scale_the_peak_without_compounding():
    cfg = TrainConfig.from_dict({"optim": {"lr": 1e-3, "lr_schedule": "linear", "lr_warmup_iterations": 2,
                                           "lr_final_ratio": 0.0}, "run": {"iterations": 4}})
    assert [cfg.lr_factor_at(i) for i in range(5)] == [0.5, 1.0, 0.5, 0.25, 0.0]
    layer = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW([{"params": [layer.weight], "lr": 1e-3}, {"params": [layer.bias], "lr": 2e-3}])
    step = OptimizerStep([opt])
    for i in range(4):
        step.set_lr_factor(cfg.lr_factor_at(i))
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.25e-3), pytest.approx(0.5e-3)]
    with pytest.raises(Exception, match="lr_schedule"):
        TrainConfig.from_dict({"optim": {"lr_schedule": "exp"}})


def test_optimizer_step_skips_and_counts_nonfinite_and_exploding_gradients():
    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    step = OptimizerStep([torch.optim.SGD(layer.parameters(), lr=0.1)], max_grad_norm=1.0, skip_grad_norm=100.0)
    (layer(torch.full((1, 3), float("nan")))).sum().backward()
    assert step.step() == "nonfinite_grad" and layer.weight.grad is None
    (1e6 * layer(torch.ones(1, 3))).sum().backward()
    assert step.step() == "exploding_grad"
    layer(torch.ones(1, 3)).sum().backward()
    assert step.step() is None
    out = step.metrics()
    assert out[m.STEPS] == 1 and out[m.SKIPPED_PREFIX + "nonfinite_grad"] == 1 and out[m.SKIPPED_PREFIX + "exploding_grad"] == 1
    assert not torch.equal(layer.weight, before) and out[m.GRAD_NORM] == pytest.approx(math.sqrt(3 + 1))


def test_value_clip_is_refused_for_grpo():
    from toolgym.errors import ConfigError

    with pytest.raises(ConfigError, match="value_clip"):
        TrainConfig.from_dict({"algorithm": {"name": "grpo", "value_clip": 0.2}})


def test_trainer_configs_and_metrics_import_without_torch():
    code = ("import sys, toolgym.trainers, toolgym.trainers.config, toolgym.trainers.metrics, toolgym.trainers.schedule, "
            "toolgym.trainers.cli_train; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
