"""A critic that learns from verified outcomes while GRPO trains the policy (K2's closed-loop self-critique).

The rubric has a verifiable criterion (a check: at least half of what the episode wrote is
digits) and the closed loop uses it as ``critic.outcome``. Every iteration, siblings whose
outcomes differ become critic prompts ("which of A and B better meets the criterion?"), asked
in both orders; the model's verdict is its probability of the label "A" against "B", and the
rows that reward naming the verified winner join the policy's batch, so one update trains both
roles. The ``critic/*`` figures are logged every iteration (``docs/training.md`` lists them).

Two iterations on the untrained tiny MoE show the plumbing; ``benchmarks/critic_training.py``
measures the learning (12 iterations, held-out agreement 0.44 -> 0.63 over 3 seeds).
Run: ``python examples/06_learning_critic.py [--iterations 2]``.
"""

from __future__ import annotations

import argparse

from toolgym.rubrics import rubric_from_dict
from toolgym.rubrics.checks.registry import register_check


@register_check(name="example_digit_heavy", replace=True)
def example_digit_heavy(task, episode) -> bool:
    """At least half of the characters the episode wrote are digits."""
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) >= len(text) / 2 > 0


RUBRIC = rubric_from_dict({"name": "digits", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
    {"id": "heavy", "description": "At least half of what the response wrote is digits.", "weight": 1,
     "source": {"type": "check", "check": "example_digit_heavy"}}]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    import torch

    from toolgym.trainers import metrics as m
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import build_trainer, load_policy

    torch.manual_seed(0)
    config = TrainConfig.from_dict({
        "model": {"tiny": "kimi", "seed": 0},
        "env": {"id": "toolgym/unitconv-v0"},
        "algorithm": {"group_size": 8},
        "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 8},
        "optim": {"lr": 3e-3, "minibatch_size": 1024},  # one optimizer step per update, on every row
        "run": {"iterations": args.iterations, "seed": 0, "tensorboard": False, "plots": False},
        "critic": {"outcome": "heavy", "train_critic": True, "verdict": "label", "label_advantage": "pair",
                   "label_prompt": "compact", "mix_fraction": 0.85, "loss_weight": 10, "extra_updates": 2,
                   "replay_pairs": 44}})
    model, tokenizer = load_policy(config)
    trainer = build_trainer(config, model, tokenizer, rubric=RUBRIC)
    try:
        for row in trainer.train(args.iterations):
            print(f"iteration {int(row[m.ITERATION])}: reward {row[m.REWARD_MEAN]:.3f}, "
                  f"verified pairs {row.get(m.CRITIC_VERIFIED_PAIRS, 0):.0f}, critic rows {row.get(m.CRITIC_TRAIN_ROWS, 0):.0f}")
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
