"""Which label-verdict objective can the tiny MoE fit? Supervised steps on verified pairs, per objective and prompt.

``critic_training.py`` measures the closed loop; this isolates the critic's loss. From one
untrained tiny MoE per seed, the same verified pairs (siblings of UnitConv episodes whose
outcome ``heavy``, digits >= 50% of what was written, differs) train the label verdict with
plain AdamW (no RL machinery), under two objectives and two prompts:

- ``prompt``: a logistic loss per prompt, each order of a pair on its own (what
  ``critic.label_advantage: miss`` trains);
- ``pair``: a logistic loss on the both-order verdict, the two orders' log-odds summed (what
  ``critic.label_advantage: pair`` trains; a label or position preference cancels out of it);
- ``full`` / ``compact``: ``critic.label_prompt`` (rubric, task and system prompt, or the
  criterion and the two responses only).

Each arm starts from the same weights with a fresh optimizer and sees the same minibatches.
Figures: the training loss (mean of the last 5 steps) and the training pairs' both-order
agreement (can it fit?), and held-out both-order agreement and AUC on pairs of tasks no training
pair comes from (does what it fits carry over?).

    python benchmarks/critic_objective.py --seeds 6 7 8
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from critic_training import config, digit_share, heldout_items, rubric, spread

from toolgym.rubrics import FunctionCritic
from toolgym.rubrics.calibration import roc_auc

ARMS = [("prompt", "full"), ("pair", "full"), ("prompt", "compact"), ("pair", "compact")]


def loop_args(prompt: str) -> argparse.Namespace:
    """``critic_training.config``'s settings (only the model, the rollout and the prompt matter here)."""
    return argparse.Namespace(group_size=8, clip_high=0.2, tasks=3, lr=3e-3, minibatch_size=1024, iterations=1, mix=0.85,
                              advantage="pair", label_prompt=prompt, loss_weight=1.0, extra_updates=0, replay_pairs=0,
                              replay_size=512, outcome="heavy")


def log_odds(trainer: Any, prompts: list[list[int]]) -> Any:
    """``(N,)`` log p("A") - log p("B") after each prompt, with gradient (the critic loop's own forward)."""
    from toolgym.trainers.critic_loop import label_forward

    lp = label_forward(trainer.model, prompts, trainer.critic_loop.label_tokens, trainer.sampler.pad_id)  # (N, 2)
    return lp[:, 0] - lp[:, 1]


def figures(trainer: Any, prompts: list[list[int]], first_won: Any) -> dict[str, float]:
    """Both-order agreement and AUC of pairs (prompts adjacent: order 1, order 2), and per-prompt agreement."""
    import torch

    trainer.model.eval()
    with torch.no_grad():
        d = torch.cat([log_odds(trainer, prompts[i : i + 32]) for i in range(0, len(prompts), 32)])
    trainer.model.train()
    pair = d[0::2] - d[1::2]  # (P,) both-order log-odds that order 1's "A" won
    single = torch.stack([first_won, ~first_won], dim=1).reshape(-1)  # (N,) "A" won, per prompt
    return {"pair": float(((pair > 0) == first_won).float().mean()), "pair_auc": roc_auc(first_won.tolist(), pair.tolist()) or 0.5,
            "prompt": float(((d > 0) == single).float().mean())}


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from toolgym.trainers.run import build_trainer, load_policy

    out: dict[str, Any] = {"seed": seed}
    cfg = config(seed, loop_args("full"))
    model, tokenizer = load_policy(cfg)
    trainers = {p: build_trainer(config(seed, loop_args(p)), model, tokenizer, rubric=rubric(),
                                 critics=[FunctionCritic("digits", digit_share)]) for p in ("full", "compact")}
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train = heldout_items(trainers["full"], 0, args.train_tasks, seed)  # adjacent orders; tasks 0.. are training tasks
    held = heldout_items(trainers["full"], 10_000, args.heldout_tasks, seed + 1)
    out |= {"train_pairs": len(train) // 2, "heldout_pairs": len(held) // 2}
    train_won = torch.tensor([w == "A" for *_, w in train[0::2]])  # (P,)
    held_won = torch.tensor([w == "A" for *_, w in held[0::2]])
    for objective, prompt in ARMS:
        trainer = trainers[prompt]
        model.load_state_dict(initial)
        tp, _ = trainer.critic_loop.label_verdicts(train)
        hp, _ = trainer.critic_loop.label_verdicts(held)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        rng, losses, t0 = random.Random(seed), [], time.perf_counter()
        arm: dict[str, Any] = {"prompt_tokens": statistics.mean(len(p) for p in tp), "heldout_before": figures(trainer, hp, held_won)}
        for _ in range(args.steps):
            pairs = rng.sample(range(len(train_won)), min(args.pairs_per_step, len(train_won)))
            d = log_odds(trainer, [tp[2 * i + k] for i in pairs for k in (0, 1)]).view(-1, 2)  # (b, order)
            won = train_won[pairs].float()  # (b,)
            if objective == "pair":  # one verdict per pair: both orders' log-odds summed
                loss = torch.nn.functional.binary_cross_entropy_with_logits(d[:, 0] - d[:, 1], won)
            else:  # each order on its own ("A" won the second order when it lost the first)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(d.reshape(-1), torch.stack([won, 1 - won], 1).reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        arm |= {"final_loss": statistics.mean(losses[-5:]), "train_after": figures(trainer, tp, train_won),
                "heldout_after": figures(trainer, hp, held_won), "seconds": time.perf_counter() - t0}
        out[f"{objective}/{prompt}"] = arm
        print(f"  seed {seed} {objective}/{prompt}: loss {arm['final_loss']:.3f}, train pair {arm['train_after']['pair']:.3f}, "
              f"held-out pair {arm['heldout_before']['pair']:.3f} -> {arm['heldout_after']['pair']:.3f}", file=sys.stderr, flush=True)
    for t in trainers.values():
        t.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[6, 7, 8])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--pairs-per-step", type=int, default=16, help="pairs per step (each in both orders)")
    parser.add_argument("--train-tasks", type=int, default=60, help="tasks whose 8 siblings give the training pairs")
    parser.add_argument("--heldout-tasks", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/critic_objective.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    runs = [run_seed(s, args) for s in args.seeds]
    summary: dict[str, Any] = {"args": vars(args), "runs": runs}
    print(f"{'objective/prompt':<18}{'tokens':>7}{'loss':>7}{'train pair':>11}{'held-out pair':>15}{'gain':>8}{'min':>8}{'AUC after':>10}")
    for objective, prompt in ARMS:
        key = f"{objective}/{prompt}"
        arms = [r[key] for r in runs]
        gain = spread([a["heldout_after"]["pair"] - a["heldout_before"]["pair"] for a in arms])
        summary[f"gain/{key}"] = gain
        print(f"{key:<18}{statistics.mean(a['prompt_tokens'] for a in arms):>7.0f}{statistics.mean(a['final_loss'] for a in arms):>7.3f}"
              f"{statistics.mean(a['train_after']['pair'] for a in arms):>11.3f}"
              f"{statistics.mean(a['heldout_before']['pair'] for a in arms):>7.3f} ->{statistics.mean(a['heldout_after']['pair'] for a in arms):>6.3f}"
              f"{gain['mean']:>+8.3f}{gain['min']:>+8.3f}{statistics.mean(a['heldout_after']['pair_auc'] for a in arms):>10.3f}")
    print(f"{len(runs)} seeds, {args.steps} steps of {args.pairs_per_step} pairs, lr {args.lr}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
