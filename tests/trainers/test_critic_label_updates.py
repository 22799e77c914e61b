"""Label-verdict critic training: advantages that correct a shared label preference, critic weight and extra updates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.rubrics import FunctionCritic, rubric_from_dict
from toolgym.rubrics.checks.registry import register_check
from toolgym.trainers.config import ConfigError, TrainConfig

torch = pytest.importorskip("torch")

from toolgym.trainers import metrics as m
from toolgym.trainers.critic_loop import CriticLoop, label_advantages


@settings(max_examples=50, deadline=None)
@given(p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8), reward=st.floats(0.1, 10.0))
def test_miss_advantages_are_the_verdicts_miss_and_constant_ones_do_not_depend_on_it(p, reward):
    p_win = torch.tensor(p)
    miss = label_advantages(p_win, reward, "miss", scale_by_std=True)  # (N, 2)
    assert miss.shape == (len(p), 2) and torch.allclose(miss[:, 0], reward * (1 - p_win)) and torch.equal(miss[:, 1], -miss[:, 0])
    const = label_advantages(p_win, reward, "constant", scale_by_std=True)
    assert torch.equal(const, const[:1].expand_as(const)) and const[0, 0] > 0 > const[0, 1]
    with pytest.raises(ValueError, match="critic.label_advantage must be 'constant', 'miss' or 'pair'"):
        label_advantages(p_win, reward, "sometimes", scale_by_std=True)


def bias_gradient(bias: float, kind: str) -> float:
    """d(loss)/d(bias) of one pair asked in both orders, for a judge with a preference for "A" of ``bias`` nats
    and no other signal: the policy-gradient loss -sum(advantage * log p(label)) over the four label rows."""
    b = torch.tensor(bias, requires_grad=True)
    logp = torch.log_softmax(torch.stack([b, torch.tensor(0.0)]), dim=0)  # (2,) the same verdict in both orders
    p_a = float(logp[0].detach().exp())
    # order (x, y): winner "A", so p(winner) = p_a; order (y, x): winner "B", p(winner) = 1 - p_a
    adv = label_advantages(torch.tensor([p_a, 1 - p_a]), 1.0, kind, scale_by_std=True)  # (2, 2)
    loss = -(adv[0, 0] * logp[0] + adv[0, 1] * logp[1] + adv[1, 0] * logp[1] + adv[1, 1] * logp[0])
    loss.backward()
    assert b.grad is not None
    return float(b.grad)


@settings(max_examples=50, deadline=None)
@given(bias=st.floats(-6.0, 6.0).filter(lambda x: abs(x) > 1e-3))
def test_only_miss_advantages_correct_a_label_preference_both_orders_share(bias):
    assert bias_gradient(bias, "constant") == pytest.approx(0.0, abs=1e-6)  # its blind spot: never corrected
    grad = bias_gradient(bias, "miss")
    assert grad * bias > 0  # a descent step moves the preference toward 0
    assert grad == pytest.approx(math.tanh(bias / 2), rel=1e-4, abs=1e-7)  # exactly the logistic loss's gradient


logits = st.floats(-8.0, 8.0)


@settings(max_examples=100, deadline=None)
@given(orders=st.lists(st.tuples(logits, logits, logits, logits), min_size=1, max_size=6), reward=st.floats(0.1, 10.0),
       winners=st.lists(st.sampled_from("AB"), min_size=6, max_size=6))
def test_pair_advantages_are_the_gradient_of_the_both_order_logistic_loss(orders, reward, winners):
    """Each pair: the label logits of its first order (x, y) and second order (y, x). The four label rows' policy-gradient
    loss, with "pair" advantages read from the detached verdicts, has the gradient of -reward * log sigmoid(o), o the
    both-order log-odds of the verified winner; and a label preference shared by both orders cancels out of it."""
    z = torch.tensor(orders, dtype=torch.float64, requires_grad=True)  # (P, 4): A, B logits of order 1, then of order 2
    lp1, lp2 = torch.log_softmax(z[:, :2], dim=1), torch.log_softmax(z[:, 2:], dim=1)  # (P, 2) each
    win = torch.tensor([w == "A" for w in winners[: len(orders)]])  # (P,) winner of the first order
    w1, l1 = torch.where(win, lp1[:, 0], lp1[:, 1]), torch.where(win, lp1[:, 1], lp1[:, 0])  # order 1: winner's label, other
    w2, l2 = torch.where(win, lp2[:, 1], lp2[:, 0]), torch.where(win, lp2[:, 0], lp2[:, 1])  # order 2: the labels swap
    p_win = torch.stack([w1.exp(), w2.exp()], dim=1).detach().reshape(-1)  # (2P,) both orders adjacent
    adv = label_advantages(p_win, reward, "pair", scale_by_std=True).view(-1, 2, 2).double()  # (P, order, [winner, other])
    assert torch.equal(adv[:, 0], adv[:, 1]) and torch.equal(adv[..., 1], -adv[..., 0])
    pg = -(adv[:, 0, 0] * w1 + adv[:, 0, 1] * l1 + adv[:, 1, 0] * w2 + adv[:, 1, 1] * l2).sum()
    (pg_grad,) = torch.autograd.grad(pg, z, retain_graph=True)
    odds = (w1 - l1) + (w2 - l2)  # (P,)
    (logistic_grad,) = torch.autograd.grad(-(reward * torch.nn.functional.logsigmoid(odds)).sum(), z)
    assert torch.allclose(pg_grad, logistic_grad, atol=1e-4)
    with pytest.raises(ValueError, match="two orders adjacent"):
        label_advantages(p_win[:-1], reward, "pair", scale_by_std=True)


@settings(max_examples=50, deadline=None)
@given(bias=st.floats(-6.0, 6.0))
def test_pair_advantages_give_a_shared_label_preference_no_gradient(bias):
    assert bias_gradient(bias, "pair") == pytest.approx(0.0, abs=1e-6)


def test_critic_options_are_checked():
    with pytest.raises(ConfigError, match="critic.extra_updates / critic.label_advantage / critic.label_prompt act on label verdicts"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "extra_updates": 2}})
    with pytest.raises(ConfigError, match="critic.label_prompt act on label verdicts: set critic.verdict: label"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "label_prompt": "compact"}})
    with pytest.raises(ConfigError, match="label_prompt"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "verdict": "label", "label_prompt": "short"}})
    with pytest.raises(ConfigError, match="loss_weight"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "loss_weight": 0}})
    with pytest.raises(ConfigError, match="extra_updates"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "verdict": "label", "extra_updates": -1}})


# ---------------------------------------------------------------- on the tiny model


# Registered at import, so at collection: its function carries the registered name, as every check must (test_checks).
@register_check(name="label_updates_digit_heavy", replace=True)
def label_updates_digit_heavy(task, episode) -> bool:
    """At least half of what the episode wrote is digits."""
    return digit_share(episode) >= 0.5


def digit_share(episode, criterion=None) -> float:
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


RUBRIC = rubric_from_dict({"name": "heavy", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
    {"id": "heavy", "description": "At least half of what was written is digits.", "weight": 1,
     "source": {"type": "check", "check": "label_updates_digit_heavy"}},
    {"id": "digits", "description": "Share of digits written.", "weight": 1, "source": {"type": "critic", "critic": "digits"}}]})


def config(**critic) -> TrainConfig:
    return TrainConfig.from_dict({
        "algorithm": {"group_size": 4}, "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 8},
        "optim": {"lr": 3e-3, "minibatch_size": 8, "micro_batch_size": 8},
        "run": {"iterations": 1, "tensorboard": False, "plots": False},
        "critic": {"outcome": "heavy", "train_critic": True, "verdict": "label", **critic}})


@pytest.fixture(scope="module")
def trainer():
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = config(label_advantage="miss", extra_updates=2, loss_weight=2.0)
    model, tokenizer = load_policy(cfg)
    t = build_trainer(cfg, model, tokenizer, rubric=RUBRIC, critics=[FunctionCritic("digits", digit_share)])
    yield t
    t.close()


def test_loss_weight_scales_every_critic_advantage(trainer):
    episodes = trainer.sampler.rollout(trainer.sampler.tasks(3), group_size=4, temperature=1.0, seed=5)
    items = [(episodes[0], episodes[1], "A"), (episodes[2], episodes[3], "B")]
    heavy, _ = CriticLoop(trainer.config, trainer.sampler).critic_batch(0, items)
    light, _ = CriticLoop(config(label_advantage="miss", loss_weight=1.0), trainer.sampler).critic_batch(0, items)
    assert torch.allclose(heavy.advantages, 2.0 * light.advantages) and torch.equal(heavy.old_logp, light.old_logp)
    # miss advantages: the winner's row gets agree_reward * (1 - p(winner)), read from the row's own behaviour log-probs
    ends = light.loss_mask.bool()  # one label token per row
    logp = light.old_logp[ends].view(-1, 2)  # (prompts, [winner, other])
    p_win = torch.sigmoid(logp[:, 0] - logp[:, 1])
    assert torch.allclose(light.advantages.view(-1, 2)[:, 0], 1 - p_win, atol=1e-5)


def test_the_compact_prompt_is_a_fraction_of_the_full_one_and_carries_both_responses(trainer):
    episodes = trainer.sampler.rollout(trainer.sampler.tasks(2), group_size=2, temperature=1.0, seed=3)
    items = [(episodes[0], episodes[1], "A"), (episodes[2], episodes[3], "B")]
    full, _ = CriticLoop(trainer.config, trainer.sampler).label_verdicts(items)
    compact_loop = CriticLoop(config(label_advantage="pair", label_prompt="compact"), trainer.sampler)
    compact, verdicts = compact_loop.label_verdicts(items)
    assert all(v is not None for v in verdicts)
    tokenizer = trainer.sampler.policy.tokenizer
    for (a, b, _), short, long in zip(items, compact, full, strict=True):
        assert 2 * len(short) < len(long)
        text = tokenizer.decode(short)
        assert text.endswith("Winner: ") and a.turns[0].text.strip()[:8] in text and b.turns[0].text.strip()[:8] in text
        assert RUBRIC.criteria[0].description in text and a.task.instruction not in text
    batch, stats = compact_loop.critic_batch(0, items)
    assert batch is not None and stats[m.CRITIC_TRAIN_ROWS] == 8  # 2 pairs x 2 orders x 2 labels
    adv = batch.advantages.view(-1, 2, 2)  # (pair, order, [winner, other])
    assert torch.equal(adv[:, 0], adv[:, 1])  # one both-order verdict per pair


def test_extra_updates_train_on_verdicts_read_afresh(trainer):
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    seen = []

    def update(batch):  # the trainer's update, recording what each critic-only pass trained on
        seen.append(batch)
        return trainer.update(batch)

    try:
        row = trainer.iteration()  # the joint update, then extra_updates=2 critic-only ones
        assert row[m.CRITIC_VERIFIED_PAIRS] > 0 and row[m.CRITIC_TRAIN_ROWS] > 0 and math.isfinite(row[m.LOSS])
        loop = trainer.critic_loop
        assert loop.trained_items and loop.extra_updates(1, update) and len(seen) == 2
    finally:
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                p.copy_(params[n])
    first, second = seen
    assert first.input_ids.shape == second.input_ids.shape and bool((first.loss_mask.sum(dim=1) == 1).all())
    # the second pass re-read its behaviour log-probs after the first pass moved the model
    assert not torch.allclose(first.old_logp[first.loss_mask.bool()], second.old_logp[second.loss_mask.bool()])


def test_self_pairwise_label_critic_scores_with_the_loops_own_verdicts(trainer):
    import asyncio
    from types import SimpleNamespace

    from toolgym.rubrics.critics.label_critic import LabelPairwiseCritic

    sampler = SimpleNamespace(rubric=RUBRIC, critics=None, policy=trainer.sampler.policy, model=trainer.model,
                              pad_id=trainer.sampler.pad_id)
    loop = CriticLoop(config(critic="self_pairwise", name="self"), sampler)
    critic = sampler.critics["self"]
    assert isinstance(critic, LabelPairwiseCritic) and critic.read == loop.read_label_questions
    group = trainer.sampler.rollout(trainer.sampler.tasks(4), group_size=3, temperature=1.0, seed=9)[:3]  # one task
    (criterion,) = [c for c in RUBRIC.criteria if c.id == "heavy"]
    results = asyncio.run(critic.judge(group, [criterion], RUBRIC))
    _, verdicts = loop.label_verdicts([(a, b) for a in group for b in group if a is not b])
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    for i, r in enumerate(results):  # win rate: soft wins over the 2 (n - 1) comparisons an episode played
        wins = sum(v.p_a if a == i else 1 - v.p_a for (a, b), v in zip(pairs, verdicts, strict=True) if i in (a, b))
        assert r.judgements["heavy"].raw == pytest.approx(wins / 4, abs=1e-6)


def test_replay_adds_past_verified_pairs_asked_of_the_current_model(trainer):
    def alternating(scores):  # outcomes 1, 0, 1, 0 in each group of 4: 4 verified pairs per group
        return [s.model_copy(update={"criteria": [c.model_copy(update={"value": float(i % 2 == 0)}) if c.id == "heavy" else c
                                                  for c in s.criteria]}) for i, s in enumerate(scores)]

    loop = CriticLoop(config(label_advantage="miss", replay_pairs=3, replay_size=5), trainer.sampler)
    batches = []
    for it, seed in enumerate((11, 12)):
        episodes = trainer.sampler.rollout(trainer.sampler.tasks(2), group_size=4, temperature=1.0, seed=seed)
        _, stats = loop.step(it, episodes, alternating(trainer.sampler.score(episodes)), None)
        batches.append((episodes, list(loop.trained_items), stats))
    (first_eps, first_items, _), (second_eps, second_items, stats) = batches
    assert stats[m.CRITIC_VERIFIED_PAIRS] == 8 and first_items and all(it[0] in first_eps for it in first_items)
    assert len(loop.replay) == 5  # the oldest pairs are dropped past replay_size
    fresh = [it for it in second_items if it[0] in second_eps]
    replayed = [it for it in second_items if it[0] in first_eps]
    assert replayed and len(replayed) <= 3 and len(fresh) + len(replayed) == len(second_items)
    assert stats[m.CRITIC_TRAIN_SAMPLES] == 2 * len(second_items)  # each pair asked in both orders


def test_an_iteration_without_verified_pairs_still_trains_on_replayed_ones(trainer):
    # Once every sibling agrees on the outcome (a converged policy) the iteration has no fresh pair;
    # the critic goes on training on the kept ones instead of stopping.
    def outcomes(scores, value):
        return [s.model_copy(update={"criteria": [c.model_copy(update={"value": value(i)}) if c.id == "heavy" else c
                                                  for c in s.criteria]}) for i, s in enumerate(scores)]

    loop = CriticLoop(config(label_advantage="miss", replay_pairs=3), trainer.sampler)
    episodes = trainer.sampler.rollout(trainer.sampler.tasks(2), group_size=4, temperature=1.0, seed=11)
    loop.step(0, episodes, outcomes(trainer.sampler.score(episodes), lambda i: float(i % 2 == 0)), None)
    kept = list(loop.replay)
    later = trainer.sampler.rollout(trainer.sampler.tasks(2), group_size=4, temperature=1.0, seed=12)
    batch, stats = loop.step(1, later, outcomes(trainer.sampler.score(later), lambda i: 1.0), None)
    assert stats[m.CRITIC_VERIFIED_PAIRS] == 0 and batch is not None and len(loop.trained_items) == 3
    assert all(it in kept for it in loop.trained_items) and stats[m.CRITIC_TRAIN_ROWS] == 12  # 3 pairs x 2 orders x 2 labels
    without = CriticLoop(config(label_advantage="miss"), trainer.sampler)  # no replay: nothing to train on
    assert without.step(1, later, outcomes(trainer.sampler.score(later), lambda i: 1.0), None)[0] is None


def test_resume_keeps_the_critics_replay_pairs(tmp_path):
    from toolgym.trainers.run import train

    def cfg(out, iterations):
        c = config(label_advantage="miss", replay_pairs=4)
        return c.model_copy(update={"run": c.run.model_copy(update={"iterations": iterations, "out_dir": str(out), "checkpoint_every": 1})})

    kwargs = {"rubric": RUBRIC, "critics": [FunctionCritic("digits", digit_share)]}
    straight = train(cfg(tmp_path / "a", 3), **kwargs).history
    train(cfg(tmp_path / "b", 2), **kwargs)  # "killed" after two iterations
    resumed = train(cfg(tmp_path / "b", 3), resume=True, **kwargs).history

    def steady(row):
        return {k: v for k, v in row.items() if not k.startswith(m.TIME_PREFIX)}

    assert steady(resumed[0]) == steady(straight[2])
