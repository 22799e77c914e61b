"""The closed-loop critic: per-iteration agreement with verified outcomes, and critic training rows."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.policy import PolicyTurn
from toolgym.rubrics import FunctionCritic, Score, rubric_from_dict
from toolgym.rubrics.checks.registry import register_check
from toolgym.rubrics.critics.online import (
    RunningCalibration,
    check_criterion,
    check_critics,
    reweighted,
    verified_pairs,
)
from toolgym.rubrics.score import CriterionScore, Unscorable
from toolgym.trainers.config import ConfigError, TrainConfig

torch = pytest.importorskip("torch")

from toolgym.trainers import metrics as m
from toolgym.trainers.critic_loop import CriticLoop, concat_batches, judgement_reward


def score(i: int, success: bool | None, critic: float | None, *, broken: bool = False) -> Score:
    """A score with a verifiable ``state`` criterion and a critic-sourced ``clarity`` criterion."""
    crit = [CriterionScore(id="state", kind="core", source="check:final_state_matches_gold", weight=1.0,
                           value=None if success is None else float(success))]
    bad = Unscorable(kind="judge_unparseable", message="no JSON") if broken else None
    crit.append(CriterionScore(id="clarity", kind="core", source="critic:judge", weight=1.0,
                               value=None if broken else critic, unscorable=bad))
    return Score(episode_id=f"e{i}", rubric="r", total=0.5, criteria=crit)


def noisy_groups(p: float, seed: int, n_groups: int = 300, k: int = 4) -> list[list[Score]]:
    """Groups whose critic names each episode's outcome right with probability ``p`` (a fake judge of known accuracy)."""
    rng = random.Random(seed)
    groups = []
    for g in range(n_groups):
        group = []
        for j in range(k):
            y = rng.random() < 0.5
            right = rng.random() < p
            group.append(score(g * k + j, y, float(y if right else not y)))
        groups.append(group)
    return groups


@settings(max_examples=15, deadline=None)
@given(p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_agreement_of_a_judge_right_with_probability_p_is_p(p, seed):
    (check,) = check_critics(noisy_groups(p, seed), "state")
    assert check.criterion == "clarity" and check.pairs > 300
    # pairs of one group share episodes, so allow 5 binomial std of the pair count
    assert abs(check.agreement - p) < 5 * math.sqrt(0.25 / check.pairs) + 0.02
    if check.auc is not None:  # a judge right with probability p ranks a success first with probability p too
        assert abs(check.auc - p) < 0.08


@settings(max_examples=30, deadline=None)
@given(outcomes=st.lists(st.lists(st.booleans(), min_size=2, max_size=5), min_size=1, max_size=6))
def test_perfect_inverted_and_constant_critics(outcomes):
    def groups(value):
        return [[score(10 * g + j, y, value(y)) for j, y in enumerate(group)] for g, group in enumerate(outcomes)]

    perfect = check_criterion(groups(float), "state", "clarity")
    inverted = check_criterion(groups(lambda y: float(not y)), "state", "clarity")
    constant = check_criterion(groups(lambda y: 0.7), "state", "clarity")
    mixed = sum(len(set(g)) == 2 for g in outcomes)
    assert (perfect.pairs > 0) == (mixed > 0)
    if perfect.pairs:
        assert (perfect.agreement, inverted.agreement, constant.agreement) == (1.0, 0.0, 0.5)
    else:
        assert perfect.agreement is None  # no verified pair: undefined, not 0
    both = {y for g in outcomes for y in g} == {True, False}
    assert (perfect.auc == 1.0 and inverted.auc == 0.0 and constant.auc == 0.5) if both else perfect.auc is None


@settings(max_examples=30, deadline=None)
@given(outcomes=st.lists(st.one_of(st.none(), st.booleans()), min_size=2, max_size=6), seed=st.integers(0, 99))
def test_verified_pairs_name_the_successful_sibling(outcomes, seed):
    group = [score(i, y, 0.5) for i, y in enumerate(outcomes)]
    pairs = verified_pairs(group, "state", rng=random.Random(seed))
    known = [y for y in outcomes if y is not None]
    assert len(pairs) == sum(known) * (len(known) - sum(known))
    for p in pairs:
        win, lose = (p.a, p.b) if p.winner == "A" else (p.b, p.a)
        assert outcomes[win] is True and outcomes[lose] is False


def test_unscorable_judgements_are_counted_not_scored():
    group = [score(0, True, None, broken=True), score(1, False, 0.2), score(2, True, 0.9)]
    check = check_criterion([group], "state", "clarity")
    assert check.unscorable == 1 and check.pairs == 1 and check.agreement == 1.0 and check.episodes == 2


def test_a_misspelt_outcome_is_named():
    with pytest.raises(ValueError, match="'stat' is no criterion.*'state'"):
        check_critics([[score(0, True, 1.0)]], "stat")


def digit_share(episode, criterion=None) -> float:
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


@register_check(name="critic_loop_digit_heavy", replace=True)
def critic_loop_digit_heavy(task, episode) -> bool:
    """A verifiable outcome with variance even for a random policy: at least half of what it wrote is digits."""
    return digit_share(episode) >= 0.5


CRITERION = rubric_from_dict({"name": "r", "criteria": [
    {"id": "heavy", "description": "at least half digits", "source": {"type": "check", "check": "critic_loop_digit_heavy"}}]}).criteria[0]


@settings(max_examples=40, deadline=None)
@given(winner=st.sampled_from(["A", "B"]), said=st.sampled_from(["A", "B", "tie", "a.", "Draw"]), prose=st.text(max_size=30))
def test_judgement_reward(winner, said, prose):
    text = prose.replace("{", "") + json.dumps({"criteria": [{"id": "heavy", "winner": said}]})
    expected = 1.0 if said.strip(".").upper() == winner else 0.0
    assert judgement_reward(text, CRITERION, winner, 1.0) == expected


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=60))
def test_an_unreadable_judgement_is_unscorable_never_zero(text):
    assert judgement_reward(text.replace("{", ""), CRITERION, "A", 1.0) is None
    assert judgement_reward('{"criteria": [{"id": "other", "winner": "A"}]}', CRITERION, "A", 1.0) is None


@settings(max_examples=30, deadline=None)
# Weights and fits are 0 or at least 1e-3: subnormal values make the ratio below meaningless in floats.
@given(weights=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 5.0)), min_size=3, max_size=3),
       fit=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), min_size=2, max_size=2))
def test_reweighting_keeps_the_critic_share_and_the_verifiable_weights(weights, fit):
    rubric = rubric_from_dict({"name": "r", "criteria": [
        {"id": "state", "description": "s", "weight": weights[0], "source": {"type": "check", "check": "final_state_matches_gold"}},
        {"id": "c1", "description": "c", "weight": weights[1], "source": {"type": "critic", "critic": "judge"}},
        {"id": "c2", "description": "c", "weight": weights[2], "source": {"type": "critic", "critic": "judge"}}]})
    out = {c.id: c.weight for c in reweighted(rubric, {"c1": fit[0], "c2": fit[1]}).criteria}
    assert out["state"] == weights[0]
    assert out["c1"] + out["c2"] == pytest.approx(weights[1] + weights[2])
    if sum(fit) > 0 and weights[1] + weights[2] > 0:
        assert out["c1"] / (weights[1] + weights[2]) == pytest.approx(fit[0] / sum(fit))


def test_running_calibration_weights_the_informative_criterion():
    rng = random.Random(0)
    cal = RunningCalibration("state", ["clarity", "noise"], window=200)
    for i in range(300):
        y = rng.random() < 0.5
        s = score(i, y, float(y))
        s.criteria.append(CriterionScore(id="noise", kind="core", source="critic:judge", weight=1.0, value=rng.random()))
        cal.add([s])
    fit = cal.fit()
    assert len(cal.scores) == 200 and fit.weights["clarity"] > 0.9 and fit.cv_auc > 0.95


def test_config_names_the_field_and_the_fix():
    with pytest.raises(ConfigError, match="set critic.outcome"):
        TrainConfig.from_dict({"critic": {"train_critic": True}})
    with pytest.raises(ConfigError, match="set critic.outcome"):
        TrainConfig.from_dict({"critic": {"reweight": True}})
    with pytest.raises(ConfigError, match="system.mode: inprocess"):
        TrainConfig.from_dict({"critic": {"outcome": "state"}, "system": {"mode": "sync"}})
    with pytest.raises(ConfigError, match="critic.outcome.*GRPO trainer only.*algorithm.name: grpo"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "train_critic": True},
                               "algorithm": {"name": "ppo", "value_model": "head"}})
    with pytest.raises(ConfigError, match="mix_fraction"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "mix_fraction": 1.0}})


# ---------------------------------------------------------------- critic training on the tiny model


RUBRIC = rubric_from_dict({"name": "heavy", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
    {"id": "heavy", "description": "At least half of what was written is digits.", "weight": 1,
     "source": {"type": "check", "check": "critic_loop_digit_heavy"}},
    {"id": "digits", "description": "Share of digits written.", "weight": 1, "source": {"type": "critic", "critic": "digits"}}]})


def config(**critic) -> TrainConfig:
    return TrainConfig.from_dict({
        "algorithm": {"group_size": 4}, "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 8},
        "optim": {"lr": 1e-3, "minibatch_size": 4, "micro_batch_size": 4},
        "run": {"iterations": 1, "tensorboard": False, "plots": False},
        "critic": {"outcome": "heavy", "max_new_tokens": 8, **critic}})


class ScriptedJudge:
    """Answers critic prompts from a script by request order: "A", "B", "tie" or garbage text."""

    def __init__(self, answers: list[str]):
        self.answers = answers

    async def generate(self, requests):
        out = []
        for n, _ in enumerate(requests):
            said = self.answers[n % len(self.answers)]
            text = json.dumps({"criteria": [{"id": "heavy", "winner": said}]}) if said in ("A", "B", "tie") else said
            ids = [5 + (ord(ch) % 50) for ch in text[:12]]
            out.append(PolicyTurn(text=text, prompt_token_ids=[1, 2, 3, 4], token_ids=ids, logprobs=[-1.0] * len(ids)))
        return out


@pytest.fixture(scope="module")
def trainer():
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = config(train_critic=True, mix_fraction=0.5, reweight=True)
    model, tokenizer = load_policy(cfg)
    t = build_trainer(cfg, model, tokenizer, rubric=RUBRIC, critics=[FunctionCritic("digits", digit_share)])
    yield t
    t.close()


def test_iteration_logs_the_critic_check_and_counts_unreadable_critic_samples(trainer):
    row = trainer.iteration()
    assert row[m.CRITIC_VERIFIED_PAIRS] > 0  # the digit share varies across siblings of the random tiny model
    # the digits critic is monotone in the outcome's own measure: it orders every verified pair right
    assert row[m.CRITIC_AGREEMENT.format(criterion="digits")] == 1.0 and row[m.CRITIC_AUC.format(criterion="digits")] == 1.0
    assert row[m.CRITIC_PAIRS.format(criterion="digits")] == row[m.CRITIC_VERIFIED_PAIRS] and math.isfinite(row[m.LOSS])
    # the untrained tiny model writes no JSON verdict: every critic sample is counted unscorable, none is a 0
    assert row[m.CRITIC_WEIGHT.format(criterion="digits")] == 1.0  # the only critic criterion keeps the critic's whole weight
    samples = row[m.CRITIC_TRAIN_SAMPLES]
    assert samples >= 4 and row[m.CRITIC_TRAIN_UNSCORABLE] + row[m.CRITIC_TRAIN_ROWS] == samples


def test_critic_rows_carry_agreement_rewards_and_train_the_tiny_model(trainer):
    episodes = trainer.sampler.rollout(trainer.sampler.tasks(5), group_size=4, temperature=1.0, seed=7)
    items = [(episodes[0], episodes[1], "A"), (episodes[2], episodes[3], "B")]
    loop = CriticLoop(trainer.config, trainer.sampler)
    policy = trainer.sampler.policy
    # prompt 0: A, B, A, junk -> 1, 0, 1, dropped; prompt 1: B, B, tie, B -> 1, 1, 0, 1
    trainer.sampler.policy = ScriptedJudge(["A", "B", "A", "not json", "B", "B", "tie", "B"])
    try:
        batch, stats = loop.critic_batch(0, items)
    finally:
        trainer.sampler.policy = policy
    assert stats[m.CRITIC_TRAIN_SAMPLES] == 8 and stats[m.CRITIC_TRAIN_UNSCORABLE] == 1 and stats[m.CRITIC_TRAIN_ROWS] == 7
    assert batch.rewards.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert stats[m.CRITIC_TRAIN_AGREEMENT] == pytest.approx(5 / 7)
    assert batch.advantages[1] < 0 < batch.advantages[0] and batch.advantages[5] < 0 < batch.advantages[4]
    assert batch.loss_mask[:, :4].sum() == 0 and batch.loss_mask.sum() > 0  # only the verdict is trained on
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    stats = trainer.update(batch)
    assert math.isfinite(stats[m.LOSS]) and stats[m.STEPS] >= 1
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_concat_batches_pads_to_the_longer_rows(trainer):
    from toolgym.trainers.batch import make_batch
    from toolgym.trainers.critic_loop import judgement_row

    turn = PolicyTurn(text="x", prompt_token_ids=[1, 2], token_ids=[3], logprobs=[-0.5])
    short = make_batch([judgement_row(turn, "a", "g")], 0, advantages=[1.0], rewards=[1.0])
    long_turn = PolicyTurn(text="x", prompt_token_ids=[1, 2, 3, 4], token_ids=[5, 6], logprobs=[-0.1, -0.2])
    long = make_batch([judgement_row(long_turn, "b", "g")], 0, advantages=[-1.0], rewards=[0.0])
    both = concat_batches(short, long, 0)
    assert both.input_ids.tolist() == [[1, 2, 3, 0, 0, 0], [1, 2, 3, 4, 5, 6]]
    assert both.loss_mask.tolist() == [[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
    assert both.advantages.tolist() == [1.0, -1.0] and concat_batches(None, long, 0) is long


def test_self_pairwise_registers_the_policy_as_critic_once():
    from types import SimpleNamespace

    from toolgym.rubrics.critics.pairwise import PairwiseCritic

    given_critic = FunctionCritic("digits", digit_share)
    sampler = SimpleNamespace(rubric=RUBRIC, critics=[given_critic], policy=ScriptedJudge(["A"]), pad_id=0)
    CriticLoop(config(critic="self_pairwise", name="digits_self"), sampler)
    assert sampler.critics["digits"] is given_critic and isinstance(sampler.critics["digits_self"], PairwiseCritic)
    assert sampler.critics["digits_self"].policy is sampler.policy  # self-critique: the policy judges
    with pytest.raises(ConfigError, match="critic.name 'digits' is already a given critic"):
        CriticLoop(config(critic="self_pairwise", name="digits"), SimpleNamespace(rubric=RUBRIC, critics=[given_critic], policy=None))
    with pytest.raises(ConfigError, match="critic.outcome 'nope' is no criterion of rubric 'heavy'"):
        CriticLoop(config(outcome="nope"), sampler)


# ---------------------------------------------------------------- the label verdict (critic.verdict: label)


def label_loop(trainer, **critic):
    return CriticLoop(config(train_critic=True, verdict="label", **critic), trainer.sampler)


def winner_log_odds(loop, items) -> list[float]:
    _, verdicts = loop.label_verdicts(items)
    return [math.log(v.p(w) / (1 - v.p(w))) for v, (_, _, w) in zip(verdicts, items, strict=True)]


def test_label_rows_ask_both_orders_and_reward_the_verified_winner_label(trainer):
    from toolgym.rubrics.critics.label import label_tokens

    episodes = trainer.sampler.rollout(trainer.sampler.tasks(6), group_size=4, temperature=1.0, seed=11)
    loop = label_loop(trainer)
    tokens = label_tokens(trainer.sampler.policy.tokenizer)
    batch, stats = loop.critic_batch(0, [(episodes[0], episodes[1], "A"), (episodes[2], episodes[3], "B")])
    # 2 pairs x 2 orders asked, every verdict read (none unscorable), 2 label rows per prompt
    assert stats[m.CRITIC_TRAIN_SAMPLES] == 4 and stats[m.CRITIC_TRAIN_UNSCORABLE] == 0 and stats[m.CRITIC_TRAIN_ROWS] == 8
    last = [int(row[mask.bool()][-1]) for row, mask in zip(batch.input_ids, batch.attention_mask, strict=True)]
    # prompts: (0, 1) winner A, (1, 0) winner B, (2, 3) winner B, (3, 2) winner A; the winner's label row first
    assert last == [tokens.a, tokens.b, tokens.b, tokens.a, tokens.b, tokens.a, tokens.a, tokens.b]
    assert batch.rewards.tolist() == [1.0, 0.0] * 4 and all(batch.advantages[0::2] > 0) and all(batch.advantages[1::2] < 0)
    assert batch.loss_mask.sum(dim=1).tolist() == [1.0] * 8  # only the label token is trained on
    prompt_a, prompt_b = batch.input_ids[0][batch.attention_mask[0].bool()][:-1], batch.input_ids[1][batch.attention_mask[1].bool()][:-1]
    assert torch.equal(prompt_a, prompt_b)  # the two rows of a group differ only in the label
    ends = batch.input_ids[0][batch.attention_mask[0].bool()][-1 - len(tokens.prefix) : -1].tolist()
    assert ends == list(tokens.prefix)


def test_a_training_step_moves_the_label_probability_toward_the_verified_winner(trainer):
    episodes = trainer.sampler.rollout(trainer.sampler.tasks(7), group_size=4, temperature=1.0, seed=12)
    loop = label_loop(trainer)
    pair = (episodes[0], episodes[1], "B")
    items = [pair, (pair[1], pair[0], "A")]
    before = winner_log_odds(loop, items)
    batch, _ = loop.critic_batch(0, [pair])
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    try:
        trainer.update(batch)
        after = winner_log_odds(loop, items)
    finally:  # the module's other tests see the model as it was
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                p.copy_(params[n])
    assert sum(after) > sum(before) + 1e-3, (before, after)


def test_an_iteration_with_label_verdicts_trains_every_critic_prompt(trainer):
    loop = trainer.critic_loop
    trainer.critic_loop = label_loop(trainer, mix_fraction=0.5)
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    try:
        row = trainer.iteration()
    finally:
        trainer.critic_loop = loop
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                p.copy_(params[n])
    assert row[m.CRITIC_VERIFIED_PAIRS] > 0 and row[m.CRITIC_TRAIN_UNSCORABLE] == 0
    assert row[m.CRITIC_TRAIN_ROWS] == 2 * row[m.CRITIC_TRAIN_SAMPLES] > 0 and 0.0 <= row[m.CRITIC_TRAIN_AGREEMENT] <= 1.0


def test_label_verdict_config_is_checked():
    with pytest.raises(ConfigError, match="verdict"):
        TrainConfig.from_dict({"critic": {"outcome": "state", "verdict": "yaml"}})
