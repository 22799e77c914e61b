"""The trained critic's effect on the policy: GRPO whose only reward is the model's own pairwise verdicts.

K2's self-critique reward is meant to carry judgement learned where outcomes can be checked over
to where they cannot. Here the rubric has two criteria on UnitConv tasks:

- ``heavy``, the verifiable outcome (at least half of what the episode wrote is digits), with
  weight 0: it is measured and it trains the critic, but it never enters the policy's reward;
- ``judged``, scored by the policy itself as ``self_pairwise`` label critic (every ordered pair
  of siblings asked "which better meets: at least half of what was written is digits", each
  episode scored by its soft win rate), weight 1: the whole reward.

Two arms from the same initial model per seed: **trained** (``critic.train_critic``: verified
pairs of each iteration, plus replayed ones, train the critic in the same update) and **frozen**
(the critic is asked but never trained on outcomes; the policy still learns from its verdicts,
so it is the same machinery without the closed loop). The figure is held-out success: the share
of sampled episodes on unseen tasks whose outcome is a success, before and after.

    nice python benchmarks/critic_policy.py --seeds 0 1 2        # or one process per seed, then:
    python benchmarks/critic_policy.py --combine s0.json s1.json s2.json

Measured (3 seeds as 3 parallel processes, 10 iterations of 2 tasks x 8 siblings, trained arm with
miss advantages, loss weight 10, 2 extra updates, 44 replayed pairs; 64 held-out tasks x 4
samples = 256 episodes per figure, standard error ~0.03; ``benchmarks/results/critic_policy.json``):
success 0.688 before; trained 0.721 (+0.034, std 0.048), frozen 0.678 (-0.009, std 0.039);
trained - frozen +0.043 (std 0.036, min -0.008). Not a measured effect. On seed 2 the trained
critic never left naming one label (training agreement 0.500 every iteration), so every sibling's
soft win rate was equal to within 1e-6 and GRPO dropped the groups as zero-variance: success did
not move. On seed 0 it fitted its training pairs from iteration 4 (0.88-1.0) and its scores then
varied (reward std ~0.2), but they agreed with the verified outcome on the iteration's own
siblings only 0.27-0.63 of the time (``critic/agreement/judged``), and success stayed at 0.676.
Only seed 1 moved (0.691 -> 0.793, frozen 0.719).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from critic_training import digit_share, spread

from toolgym.rubrics import rubric_from_dict
from toolgym.trainers import metrics as m
from toolgym.trainers.config import TrainConfig

RUBRIC = rubric_from_dict({"name": "judged", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
    {"id": "heavy", "description": "At least half of what the response wrote is digits.", "weight": 0,
     "source": {"type": "check", "check": "bench_digit_heavy"}},
    {"id": "judged", "description": "At least half of what the response wrote is digits.", "weight": 1,
     "source": {"type": "critic", "critic": "self"}}]})


def config(seed: int, trained: bool, args: argparse.Namespace) -> TrainConfig:
    """GRPO rewarded by the self-critic; ``trained``: the critic also learns from verified pairs."""
    # Both arms read the critic alike (the prompt; with "pair", each pair's both-order verdict); only one trains it.
    critic: dict[str, Any] = {"outcome": "heavy", "critic": "self_pairwise", "name": "self", "verdict": "label",
                              "label_prompt": args.label_prompt, "label_advantage": args.advantage}
    if trained:
        critic |= {"train_critic": True, "mix_fraction": args.mix, "loss_weight": args.loss_weight,
                   "extra_updates": args.extra_updates, "replay_pairs": args.replay_pairs}
    return TrainConfig.from_dict({
        "model": {"seed": seed}, "algorithm": {"group_size": args.group_size},
        "rollout": {"tasks_per_iteration": args.tasks, "max_new_tokens": 8},
        "optim": {"lr": args.lr, "minibatch_size": args.minibatch_size, "micro_batch_size": 8},
        "run": {"iterations": args.iterations, "seed": seed, "tensorboard": False, "plots": False}, "critic": critic})


def success(trainer: Any, first_task: int, tasks: int, seed: int) -> float:
    """Share of 4 sampled episodes per held-out task whose outcome (digit-heavy) is a success."""
    episodes = trainer.sampler.rollout(trainer.sampler.task_source(first_task, tasks), group_size=4, temperature=1.0, seed=seed)
    return statistics.mean(float(digit_share(e) >= 0.5) for e in episodes)


def run_arm(seed: int, trained: bool, args: argparse.Namespace) -> dict[str, Any]:
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = config(seed, trained, args)
    model, tokenizer = load_policy(cfg)
    trainer = build_trainer(cfg, model, tokenizer, rubric=RUBRIC)
    t0 = time.perf_counter()
    before = success(trainer, 30_000, args.heldout_tasks, seed + 3)
    arm = "trained" if trained else "frozen"

    def on_iteration(h: dict[str, float]) -> None:
        print(f"  seed {seed} {arm} iteration {int(h[m.ITERATION])}: reward std {h.get(m.REWARD_STD, float('nan')):.3f} "
              f"updates {h.get(m.STEPS, 0):.0f} "
              f"critic agreement {h.get('critic/agreement/judged', float('nan')):.3f} "
              f"train agreement {h.get('critic/train_agreement', float('nan')):.3f}", file=sys.stderr, flush=True)

    history = trainer.train(args.iterations, on_iteration=on_iteration)
    after = success(trainer, 30_000, args.heldout_tasks, seed + 3)
    trainer.close()
    agreement = [h["critic/agreement/judged"] for h in history if "critic/agreement/judged" in h]
    return {"before": before, "after": after, "seconds": time.perf_counter() - t0,
            "agreement_per_iteration": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tasks", type=int, default=2, help="tasks per iteration")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--mix", type=float, default=0.85, help="critic.mix_fraction (trained arm)")
    parser.add_argument("--loss-weight", type=float, default=10.0, help="critic.loss_weight (trained arm)")
    parser.add_argument("--extra-updates", type=int, default=2, help="critic.extra_updates (trained arm)")
    parser.add_argument("--advantage", choices=["miss", "pair"], default="miss", help="critic.label_advantage (trained arm; "
                        "with 'pair' both arms also read each pair's both-order verdict)")
    parser.add_argument("--label-prompt", choices=["full", "compact"], default="full", help="critic.label_prompt (both arms)")
    parser.add_argument("--minibatch-size", type=int, default=16, help="optim.minibatch_size")
    parser.add_argument("--replay-pairs", type=int, default=44, help="critic.replay_pairs (trained arm)")
    parser.add_argument("--heldout-tasks", type=int, default=64, help="held-out tasks, 4 sampled episodes each")
    parser.add_argument("--out", default="benchmarks/results/critic_policy.json")
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="no training: tabulate these result files")
    args = parser.parse_args()
    if args.combine:
        parts = [json.loads(Path(f).read_text()) for f in args.combine]
        runs = [r for part in parts for r in part["runs"]]
        vars(args).update({k: v for k, v in parts[0]["args"].items() if k not in ("seeds", "out", "combine")})
    else:
        import torch

        torch.set_num_threads(1)
        runs = []
        for seed in args.seeds:
            runs.append({"seed": seed, "trained": run_arm(seed, True, args), "frozen": run_arm(seed, False, args)})
            print(json.dumps(runs[-1]), flush=True)
    print(f"{'seed':<6}{'before':>8}{'trained':>9}{'frozen':>8}{'trained - frozen':>18}")
    for r in runs:
        t, f = r["trained"], r["frozen"]
        print(f"{r['seed']:<6}{t['before']:>8.3f}{t['after']:>9.3f}{f['after']:>8.3f}{t['after'] - f['after']:>+18.3f}")
    summary: dict[str, Any] = {"args": vars(args), "runs": runs,
                               "trained_gain": spread([r["trained"]["after"] - r["trained"]["before"] for r in runs]),
                               "frozen_gain": spread([r["frozen"]["after"] - r["frozen"]["before"] for r in runs]),
                               "trained_minus_frozen": spread([r["trained"]["after"] - r["frozen"]["after"] for r in runs])}
    for k in ("trained_gain", "frozen_gain", "trained_minus_frozen"):
        print(f"{k:<22}{summary[k]['mean']:>+8.3f} (std {summary[k]['std']:.3f}, min {summary[k]['min']:+.3f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
