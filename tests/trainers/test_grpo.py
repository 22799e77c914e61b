"""GRPO / K2 / PPO iterations on the tiny MoE: real rollouts, rubric scoring, updates, resume."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from toolgym.rollouts.rows import TokenRow
from toolgym.rubrics import FunctionCritic, rubric_from_dict
from toolgym.trainers import metrics as m
from toolgym.trainers.config import TrainConfig
from toolgym.trainers.experience import BUDGET_STOP, Collected, Scored, collect
from toolgym.trainers.metrics import read_metrics
from toolgym.trainers.run import build_trainer, load_policy, train

RUBRIC = rubric_from_dict({
    "name": "digits", "env_ids": ["toolgym/unitconv-v0"],
    "criteria": [{"id": "digits", "description": "share of digits in what the policy wrote", "weight": 1,
                  "source": {"type": "critic", "critic": "digits"}}],
})


def digit_share(episode, criterion) -> float:
    """A reward with variance even for a random policy: the share of digits it wrote."""
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


def config(**sections) -> TrainConfig:
    base = {
        "algorithm": {"group_size": 2, "aux_loss_weight": 0.01},
        "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 8},
        "optim": {"lr": 1e-3, "minibatch_size": 4, "micro_batch_size": 2},
        "run": {"iterations": 1, "tensorboard": False, "plots": False},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return TrainConfig.from_dict(base)


def trainer_for(cfg: TrainConfig, critic=digit_share):
    model, tokenizer = load_policy(cfg)
    return build_trainer(cfg, model, tokenizer, rubric=RUBRIC, critics=[FunctionCritic("digits", critic)])


@pytest.mark.parametrize(("loss", "optim"), [("grpo", "adamw"), ("k2", "muonclip")])
def test_iteration_updates_the_policy(loss, optim):
    trainer = trainer_for(config(algorithm={"loss": loss}, optim={"kind": optim, "qk_clip_tau": 0.05}))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    row = trainer.iteration()
    trainer.close()
    assert row[m.EPISODES] == 4 and row[m.GROUPS] == 2 and row[m.UNSCORABLE] == 0
    assert row[m.ROWS] > 0 and row[m.STEPS] == 1 and math.isfinite(row[m.LOSS])
    assert math.isfinite(row[m.AUX_LOSS]) and 0 <= row[m.REWARD_MEAN] <= 1
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert any("mlp.gate.weight" in n for n in changed)
    assert {m.TIME_PREFIX + k for k in ("generation_s", "env_s", "scoring_s", "update_s")} <= set(row)
    if optim == "muonclip":  # a tau this low clips heads on the first step, and the report reaches the metrics
        assert row[m.QK_CLIPPED_HEADS] > 0 and row[m.QK_MAX_LOGIT] > 0.05


def test_unscorable_episodes_are_dropped_and_counted_never_zero():
    def flaky(episode, criterion):  # the judge fails on every sibling 1 of the first task
        if episode.id.endswith("/1") and episode.task.id == first_task:
            raise RuntimeError("judge down")
        return digit_share(episode, criterion)

    trainer = trainer_for(config(), critic=flaky)
    first_task = trainer.sampler.task_source(0, 1)[0].id
    row = trainer.iteration()
    trainer.close()
    assert row[m.UNSCORABLE] == 1
    assert row[m.GROUPS_DROPPED] == 1  # the first group kept one scorable sibling: nothing to compare
    assert row[m.ROWS] == 2  # only the second group trains


def test_token_budget_cuts_rows_and_penalizes():
    cfg = config(rollout={"token_budget": 3}, algorithm={"budget_penalty": 0.25})
    trainer = trainer_for(cfg)
    tasks = trainer.sampler.task_source(0, 2)
    episodes = trainer.sampler.rollout(tasks, group_size=2, temperature=1.0, seed=5)
    scores = trainer.sampler.score(episodes)
    collected = collect(episodes, scores, 2, budget=3, penalty=0.25)
    trainer.close()
    items = [s for g in collected.groups for s in g]
    over = [s for s in items if s.over_budget]
    assert over and collected.over_budget == len(over)
    for s in over:
        assert sum(sum(r.loss_mask) for r in s.rows) == 3
        assert s.reward == pytest.approx(s.score - 0.25)
        assert s.episode.metadata["budget_stop"] == BUDGET_STOP and s.rows[-1].truncated


@pytest.mark.parametrize("value_model", ["head", "critic"])
def test_ppo_with_a_value_model_and_ptx(value_model):
    cfg = config(algorithm={"name": "ppo", "value_model": value_model, "group_size": 1, "gamma": 0.5, "lam": 1.0},
                 ptx={"weight": 0.5, "gold_tasks": 2, "batch_size": 2})
    trainer = trainer_for(cfg)
    row = trainer.iteration()
    assert row[m.STEPS] >= 1 and math.isfinite(row[m.VALUE_LOSS]) and math.isfinite(row[m.PTX_LOSS])
    assert row[m.PTX_LOSS] > 0
    # GAE: a terminated row ends at value 0, a truncated one bootstraps from the state after it.
    with torch.no_grad():
        trainer.value.head.proj.weight.zero_()
        trainer.value.head.proj.bias.fill_(1.0)  # V = 1 everywhere
    rows = [TokenRow(episode_id=str(t), input_ids=[5, 6, 7, 8], loss_mask=[0, 1, 1, 1], behaviour_logprobs=[0, -1, -1, -1],
                     prompt_len=1, turn_spans=[(1, 4)], turn_indices=[0], ends_episode=True, terminated=t, truncated=not t)
             for t in (True, False)]
    batch, _ = trainer.build_batch(Collected(groups=[[Scored(episode=None, score=0.5, reward=0.5, rows=[r])] for r in rows]))
    trainer.close()
    # last token: terminated R = 0.5 + 0.5 * 0; truncated R = 0.5 + 0.5 * V(after) = 1.0
    assert batch.returns[0, -1].item() == pytest.approx(0.5) and batch.returns[1, -1].item() == pytest.approx(1.0)
    assert batch.returns[0, 2].item() == pytest.approx(0.25)  # one step earlier, discounted by gamma


def test_resume_after_a_kill_reproduces_the_next_iteration(tmp_path):
    kwargs = {"rubric": RUBRIC, "critics": [FunctionCritic("digits", digit_share)]}

    def cfg(out, iterations):
        return config(run={"iterations": iterations, "out_dir": str(out), "checkpoint_every": 1})

    first = train(cfg(tmp_path / "a", 3).model_copy(update={"run": cfg(tmp_path / "a", 3).run.model_copy(
        update={"tensorboard": True, "plots": True})}), **kwargs)
    straight = first.history
    assert first.plot is not None and first.plot.is_file() and any((tmp_path / "a" / "tb").iterdir())
    assert (tmp_path / "a" / "config.yaml").is_file() and len(read_metrics(tmp_path / "a" / "metrics.jsonl")) == 3
    train(cfg(tmp_path / "b", 2), **kwargs)  # "killed" after two iterations
    resumed = train(cfg(tmp_path / "b", 3), resume=True, **kwargs).history
    assert len(resumed) == 1

    def steady(row):
        return {k: v for k, v in row.items() if not k.startswith(m.TIME_PREFIX)}

    assert steady(resumed[0]) == steady(straight[2])
    assert steady(straight[2])[m.STEPS] == 1


def test_lr_schedule_sets_each_iterations_rate():
    cfg = config(optim={"lr_schedule": "linear", "lr_warmup_iterations": 1, "lr_final_ratio": 0.0}, run={"iterations": 2})
    trainer = trainer_for(cfg)
    rows = [trainer.iteration() for _ in range(2)]
    trainer.close()
    assert [r[m.LR] for r in rows] == [pytest.approx(1e-3), pytest.approx(5e-4)]  # warmup 1 -> peak, then half-way down
    assert all(g["lr"] == pytest.approx(5e-4) for g in trainer.optimizer.param_groups)
