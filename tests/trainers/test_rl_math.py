"""RL math: hand-computed values and hypothesis invariants for every function in trainers.rl."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.trainers.rl import (
    aggregate,
    clip_fraction,
    clipped_surrogate,
    gae,
    group_advantages,
    group_mean,
    k2_squared_loss,
    kl_k3,
    masked_whiten,
    terminal_rewards,
    token_entropy,
    token_logprobs,
    value_loss,
    zero_variance_groups,
)

FAST = settings(max_examples=40, deadline=None)
reward = st.floats(-10, 10, allow_nan=False, width=32)
logprob = st.floats(-6, 0, allow_nan=False, width=32)


@st.composite
def ragged(draw, max_b: int = 5, max_t: int = 7):
    """(values (B, T), mask (B, T)) with ragged masks; some rows may be empty."""
    b, t = draw(st.integers(1, max_b)), draw(st.integers(1, max_t))
    values = torch.tensor(draw(st.lists(st.lists(reward, min_size=t, max_size=t), min_size=b, max_size=b)))
    mask = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b)))
    return values, mask.int()


# ---------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    grpo = group_advantages(rewards)
    std = math.sqrt(1 / 3)  # sample std of (1, 0, 0, 1)
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5]]) / (std + 1e-6)
    torch.testing.assert_close(grpo[0:1], expected)
    assert torch.equal(grpo[1], torch.zeros(4))  # zero-variance group: no signal, no NaN
    torch.testing.assert_close(group_advantages(rewards, scale_by_std=False)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert zero_variance_groups(rewards).tolist() == [False, True]


@FAST
@given(st.integers(1, 4), st.integers(2, 6), st.data())
def test_group_advantages_center_and_scale(g, k, data):
    rewards = torch.tensor(data.draw(st.lists(st.lists(reward, min_size=k, max_size=k), min_size=g, max_size=g)))
    for scale in (True, False):
        adv = group_advantages(rewards, scale_by_std=scale)
        assert adv.shape == (g, k)
        torch.testing.assert_close(adv.sum(dim=1), torch.zeros(g), atol=1e-3, rtol=0)
    adv = group_advantages(rewards, eps=0.0)
    varied = ~zero_variance_groups(rewards, atol=1e-3)
    if varied.any():
        torch.testing.assert_close(adv[varied].std(dim=1), torch.ones(int(varied.sum())), atol=1e-3, rtol=1e-3)


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(G, K\)"):
        group_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 siblings"):
        group_advantages(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="drop unscorable episodes"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))


# ---------------------------------------------------------------- log-probs


def test_token_logprobs_match_log_softmax_in_chunks():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen).to(torch.bfloat16)
    targets = torch.randint(0, 11, (3, 5), generator=gen)
    expected = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    for chunk in (1, 4, 4096):
        got = token_logprobs(logits, targets, chunk_rows=chunk)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected)
    hot = token_logprobs(logits, targets, temperature=0.5)
    torch.testing.assert_close(hot, torch.log_softmax(logits.float() / 0.5, -1).gather(-1, targets[..., None]).squeeze(-1))
    ent = token_entropy(logits, chunk_rows=2)
    p = torch.softmax(logits.float(), -1)
    torch.testing.assert_close(ent, -(p * p.log()).sum(-1))


def test_token_logprobs_keep_the_graph():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    token_logprobs(logits, torch.tensor([[0, 2]])).sum().backward()
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([2 / 3, -1 / 3, -1 / 3]))


def test_token_logprobs_reject_mismatched_targets():
    with pytest.raises(ValueError, match="targets must be"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


# ---------------------------------------------------------------- surrogate


def test_clipped_surrogate_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[1.0, 0.3, 0.5, 0.9]]))  # ratios 2, 0.6, 1, 1.8
    mask = torch.tensor([[1, 1, 1, 0]])
    pos = clipped_surrogate(new, old, torch.tensor([2.0]), mask, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(pos, torch.tensor([[-1.28 * 2, -0.6 * 2, -2.0, 0.0]]))  # A>0: only the top clips
    neg = clipped_surrogate(new, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(neg, torch.tensor([[2.0, 0.8, 1.0, 0.0]]))  # A<0: only the bottom clips
    assert float(clip_fraction(new, old, torch.tensor([2.0]), mask, eps_low=0.2, eps_high=0.28)) == pytest.approx(1 / 3)
    assert float(clip_fraction(new, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.28)) == pytest.approx(1 / 3)


def test_math_modules_import_without_torch_or_transformers():
    import subprocess
    import sys

    code = ("import sys, toolgym.trainers.rl, toolgym.trainers.moe, toolgym.trainers.optim; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@FAST
@given(st.data())
def test_surrogate_is_minus_ratio_times_advantage_inside_the_clip_range(data):
    b, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    old = torch.tensor(data.draw(st.lists(st.lists(logprob, min_size=t, max_size=t), min_size=b, max_size=b)))
    shift = torch.tensor(data.draw(st.lists(st.lists(st.floats(-0.125, 0.125, width=32), min_size=t, max_size=t), min_size=b, max_size=b)))
    adv = torch.tensor(data.draw(st.lists(st.lists(reward, min_size=t, max_size=t), min_size=b, max_size=b)))
    new = (old + shift).requires_grad_()
    mask = torch.ones(b, t)
    loss = clipped_surrogate(new, old, adv, mask, eps_low=0.2, eps_high=0.2)
    ratio = shift.exp()
    torch.testing.assert_close(loss, -ratio * adv)
    loss.sum().backward()
    torch.testing.assert_close(new.grad, -ratio * adv)  # d(-ρA)/dlogp = -ρA


@FAST
@given(st.data())
def test_surrogate_never_below_clipped_bound_and_ignores_masked_garbage(data):
    b, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    old = torch.tensor(data.draw(st.lists(st.lists(logprob, min_size=t, max_size=t), min_size=b, max_size=b)))
    new = torch.tensor(data.draw(st.lists(st.lists(logprob, min_size=t, max_size=t), min_size=b, max_size=b)), requires_grad=True)
    adv = torch.tensor(data.draw(st.lists(reward, min_size=b, max_size=b)))
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b)))
    old_garbage = torch.where(mask, old, torch.tensor(float("-inf")))
    loss = clipped_surrogate(new, old_garbage, adv, mask, eps_low=0.2, eps_high=0.3)
    assert torch.isfinite(loss).all() and (loss[~mask] == 0).all()
    bound = -torch.clamp((new - old).exp(), 0.8, 1.3) * adv[:, None]
    assert (loss[mask] >= bound[mask] - 1e-4).all()  # -min(x, y) >= -y
    loss.sum().backward()
    assert torch.isfinite(new.grad).all() and (new.grad[~mask] == 0).all()


# ---------------------------------------------------------------- aggregation


def test_aggregation_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [6.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # the third row has no policy token
    assert float(aggregate(loss, mask, "token")) == pytest.approx(12 / 4)
    assert float(aggregate(loss, mask, "sequence")) == pytest.approx((2 + 6) / 2)
    assert float(aggregate(loss, mask, "constant", constant=3)) == pytest.approx(12 / (3 * 3))
    with pytest.raises(ValueError, match="needs constant > 0"):
        aggregate(loss, mask, "constant")
    with pytest.raises(ValueError, match="'token', 'sequence' or 'constant'"):
        aggregate(loss, mask, "bnpo")


@FAST
@given(ragged(), st.integers(1, 3))
def test_aggregation_over_micro_batches_sums_to_the_full_batch(values_mask, pieces):
    values, mask = values_mask
    splits = torch.tensor_split(torch.arange(values.shape[0]), pieces)
    tokens = float(mask.sum())
    seqs = float((mask.sum(1) > 0).sum())
    for mode, kwargs, full_kwargs in (
        ("token", {"num_tokens": tokens}, {}),
        ("sequence", {"num_sequences": seqs}, {}),
        ("constant", {"num_sequences": values.shape[0], "constant": 7.0}, {"constant": 7.0}),
    ):
        full = aggregate(values, mask, mode, **full_kwargs)
        parts = sum(aggregate(values[i], mask[i], mode, **kwargs) for i in splits if len(i))
        torch.testing.assert_close(parts, full, atol=1e-4, rtol=1e-5)
    if mask.sum() == 0:
        assert float(aggregate(values, mask, "token")) == 0.0


# ---------------------------------------------------------------- k3


def test_k3_by_hand():
    got = kl_k3(torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]]))
    assert float(got) == pytest.approx(0.5 - math.log(0.5) - 1)


@FAST
@given(st.lists(logprob, min_size=1, max_size=12), st.lists(logprob, min_size=1, max_size=12))
def test_k3_non_negative_and_zero_iff_equal(a, b):
    n = min(len(a), len(b))
    logp, ref = torch.tensor([a[:n]], dtype=torch.float64), torch.tensor([b[:n]], dtype=torch.float64)
    k3 = kl_k3(logp, ref)
    assert (k3 >= 0).all()
    apart = (logp - ref).abs() > 1e-6  # below that, d²/2 may round to 0 in any float format
    assert (k3[apart] > 0).all() and (k3[logp == ref] == 0).all()
    assert (kl_k3(logp, logp) == 0).all()


# ---------------------------------------------------------------- K2 squared loss


def test_k2_loss_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.2, 0.9]]))
    old = torch.log(torch.tensor([[0.25, 0.5], [0.2, 0.9]]))
    loss = k2_squared_loss(logp, old, torch.tensor([1.0, 0.0]), torch.ones(2, 2), tau=0.5, group_index=torch.tensor([0, 0]))
    torch.testing.assert_close(loss, torch.tensor([(0.5 - 0.5 * math.log(2)) ** 2, 0.25]))
    same = k2_squared_loss(logp, old, torch.tensor([1.0, 0.0]), torch.ones(2, 2), tau=0.5, baseline=torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(same, loss)
    with pytest.raises(ValueError, match="exactly one of group_index"):
        k2_squared_loss(logp, old, torch.tensor([1.0, 0.0]), torch.ones(2, 2), tau=0.5)


@FAST
@given(st.data(), st.floats(0.01, 2.0))
def test_k2_gradient_matches_the_k15_formula(data, tau):
    b, t = data.draw(st.integers(2, 6)), data.draw(st.integers(1, 5))
    rows = st.lists(st.lists(logprob, min_size=t, max_size=t), min_size=b, max_size=b)
    old = torch.tensor(data.draw(rows), dtype=torch.float64)
    logp = torch.tensor(data.draw(rows), dtype=torch.float64, requires_grad=True)
    rewards = torch.tensor(data.draw(st.lists(reward, min_size=b, max_size=b)), dtype=torch.float64)
    groups = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=b, max_size=b)))
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b)))
    k2_squared_loss(logp, old, rewards, mask, tau=tau, group_index=groups).sum().backward()
    # TRAINING.md: ∇ = Σ_j [∇logπ(y_j)(r_j - r̄) - τ/2 ∇L_j²], L_j = Σ_t (logp - old); the loss gradient is -2τ times it.
    r_bar = torch.stack([rewards[groups == g].mean() for g in groups])
    log_ratio = ((logp.detach() - old) * mask).sum(1)
    formula = ((rewards - r_bar)[:, None] - tau / 2 * 2 * log_ratio[:, None]) * mask
    torch.testing.assert_close(logp.grad, -2 * tau * formula)
    torch.testing.assert_close(group_mean(rewards, groups), r_bar)


# ---------------------------------------------------------------- value loss


def test_value_loss_by_hand_and_clipped():
    v, ret, mask = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1, 1]])
    torch.testing.assert_close(value_loss(v, ret, mask), torch.tensor([[2.0, 0.5]]))
    old = torch.tensor([[0.5, 0.0]])
    # token 0: unclipped (2-0)^2 = 4; clipped 0.5+0.5=1 -> (1-0)^2 = 1; max = 4 -> 2.0
    # token 1: v = old: both (0-1)^2 -> 0.5
    torch.testing.assert_close(value_loss(v, ret, mask, old_values=old, clip=0.5), torch.tensor([[2.0, 0.5]]))
    v2 = torch.tensor([[-0.4, 0.0]])
    torch.testing.assert_close(value_loss(v2, ret, mask, old_values=torch.tensor([[-1.0, 0.0]]), clip=0.2)[0, 0], torch.tensor(0.5 * 0.8**2))
    with pytest.raises(ValueError, match="needs old_values"):
        value_loss(v, ret, mask, clip=0.2)


# ---------------------------------------------------------------- GAE


def test_gae_by_hand_truncated_vs_terminated():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 7.0, 0.25], [0.5, 7.0, 0.25]])
    mask = torch.tensor([[1, 0, 1], [1, 0, 1]])  # the middle token is a tool result: skipped, not a step
    adv, ret = gae(rewards, values, mask, bootstrap=torch.tensor([2.0, 2.0]), terminated=torch.tensor([True, False]),
                   gamma=0.9, lam=0.5)
    # terminated: δ2 = 1 + 0 - 0.25 = 0.75; δ0 = 0 + 0.9*0.25 - 0.5 = -0.275; A0 = δ0 + 0.45*0.75
    # truncated:  δ2 = 1 + 0.9*2 - 0.25 = 2.55; A0 = -0.275 + 0.45*2.55
    torch.testing.assert_close(adv, torch.tensor([[-0.275 + 0.45 * 0.75, 0.0, 0.75], [-0.275 + 0.45 * 2.55, 0.0, 2.55]]))
    torch.testing.assert_close(ret, torch.where(mask.bool(), adv + values, 0.0))


@FAST
@given(st.data())
def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value(data):
    b, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    mask = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b)))
    rewards = torch.tensor(data.draw(st.lists(st.lists(reward, min_size=t, max_size=t), min_size=b, max_size=b))) * mask
    values = torch.tensor(data.draw(st.lists(st.lists(reward, min_size=t, max_size=t), min_size=b, max_size=b)))
    boot = torch.tensor(data.draw(st.lists(reward, min_size=b, max_size=b)))
    term = torch.tensor(data.draw(st.lists(st.booleans(), min_size=b, max_size=b)))
    adv, _ = gae(rewards, values, mask, bootstrap=boot, terminated=term, gamma=1.0, lam=1.0)
    to_go = rewards.flip(1).cumsum(1).flip(1) + torch.where(term, 0.0, boot)[:, None]
    torch.testing.assert_close(adv, torch.where(mask, to_go - values, 0.0), atol=1e-3, rtol=1e-4)


@FAST
@given(st.data(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_skips_environment_tokens_instead_of_stepping_through_them(data, gamma, lam):
    t = data.draw(st.integers(1, 6))
    rewards = torch.tensor([data.draw(st.lists(reward, min_size=t, max_size=t))])
    values = torch.tensor([data.draw(st.lists(reward, min_size=t, max_size=t))])
    boot, term = torch.tensor([data.draw(reward)]), torch.tensor([data.draw(st.booleans())])
    dense, _ = gae(rewards, values, torch.ones(1, t), bootstrap=boot, terminated=term, gamma=gamma, lam=lam)
    # the same steps with environment tokens (mask 0, any value) interleaved: identical advantages on the steps
    gaps = data.draw(st.lists(st.integers(0, 2), min_size=t + 1, max_size=t + 1))
    cols, mask = [], []
    for i in range(t + 1):
        cols += [None] * gaps[i]
        mask += [0] * gaps[i]
        if i < t:
            cols.append(i)
            mask.append(1)
    junk = 123.0
    r2 = torch.tensor([[0.0 if c is None else float(rewards[0, c]) for c in cols]])
    v2 = torch.tensor([[junk if c is None else float(values[0, c]) for c in cols]])
    sparse, _ = gae(r2, v2, torch.tensor([mask]), bootstrap=boot, terminated=term, gamma=gamma, lam=lam)
    torch.testing.assert_close(sparse[torch.tensor([mask]).bool()], dense[0])


def test_gae_rejects_rewards_on_environment_tokens():
    with pytest.raises(ValueError, match="rewards must sit on policy tokens"):
        gae(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2), torch.tensor([[1, 0]]),
            bootstrap=torch.zeros(1), terminated=torch.tensor([True]))


def test_terminal_rewards_and_whitening():
    placed = terminal_rewards(torch.tensor([1.0, 5.0, 2.0]), torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 1]]))
    assert placed.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]
    white = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 50.0]]), torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(white[0, :3].mean(), torch.tensor(0.0))
    assert white[0, 3] == 0
