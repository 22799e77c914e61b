"""Critic training: held-out agreement of the tiny MoE judging pairs of its own episodes, before and after.

The loop (``toolgym.trainers.critic_loop``, ``critic.verdict: label``): GRPO on UnitConv tasks
whose rubric has a verifiable outcome ``heavy`` (a registered check: at least half of what the
episode wrote is digits). Every iteration, the siblings of a group whose outcomes differ become
critic prompts in both A/B orders; the critic's verdict is the next-token probability of "A"
vs "B" after ``Winner: ``; each prompt adds a group of its two label rows (reward 1 for the
verified winner's label, 0 for the other) to the policy's batch, and one update trains both.

Why the task is learnable by a 1.2M-parameter model: the outcome is visible in the transcript
the critic reads (the digits themselves, in ~10 tokens per response), varies among siblings
even for an untrained policy (so every iteration has verified pairs), and judging it needs one
feature (digit tokens) bound to one of two spans. Why the label verdict: the JSON verdict
never parsed for this model (0.0 -> 0.0 on 3 seeds at commit ec600d3), so nothing was
rewarded; the label verdict always gives a probability, with no format to learn first.

Held-out pairs come from tasks no training iteration sees (task positions from 10,000), are
rolled out once by the untrained policy, asked in both orders, and judged by the same forward
before and after training. Figures per seed:

- ``before``/``after``: share of held-out prompts whose more probable label is the verified
  winner (a critic that always names one position scores exactly 0.5);
- ``pair_before``/``pair_after``: per pair, the log-odds of both orders summed (position bias
  cancels, as ``PairwiseCritic(both_orders=True)`` does), share naming the winner;
- ``p_winner_*``: mean probability of the winner's label; ``auc_*``: AUC of p(A) against "A won".

    nice python benchmarks/critic_training.py --seeds 0 1 2      # or one process per seed, then:
    python benchmarks/critic_training.py --combine s0.json s1.json s2.json

Measured, the both-order objective (``--advantage pair --label-prompt compact``, the other flags of the
``--minibatch-size 1024`` run below, 12 iterations; seeds 9-11 pre-registered, one process each, ~17 min;
``benchmarks/results/critic_training_pair.json``): per pair 0.441 -> 0.633, gain +0.191 (std 0.037, min
+0.146); the pair verdict's AUC 0.406 -> 0.700 (+0.294, min +0.264); single-order AUC +0.143 (min +0.099);
per prompt +0.070 (min +0.000: this objective leaves the label preference alone). Seeds 13 and 14 added
(also pre-registered; ``critic_training_pair5.json``): per pair +0.151 (std 0.081, min +0.000: seed 13
ended where it started, 0.587), pair AUC +0.210 (min +0.040). ``pair_auc``: AUC of the both-order
log-odds, one per pair.

Earlier objectives, each order trained on its own.
Measured (3 seeds as 3 parallel niced processes, 5 iterations of 3 tasks x 8 siblings, lr 3e-3,
mix 0.85; 2-core machine at load ~15, ~26 min wall each; ``benchmarks/results/critic_training.json``):
pair agreement (both orders summed) 0.388 -> 0.679, gain +0.291 (std 0.025, min +0.265) on
30-37 held-out pairs per seed; per-prompt agreement 0.500 -> 0.500 on every seed: the learned
content term of the verdict is tiny (mean p(winner) 0.49998 -> 0.50000) next to each seed's
position bias, which both-order training never moves (its gradient cancels), so alone each
prompt still names the same position; AUC 0.494 -> 0.516. The JSON verdict (commit ec600d3)
had measured 0.0 -> 0.0 (nothing parsed). Not yet robust to run length: seed 0 with
``--iterations 10`` ends at pair agreement 0.541 (0.703 after 5).

With ``--advantage miss --loss-weight 10 --extra-updates 2`` (10 iterations, ``--tasks 2``,
``--heldout-tasks 16``: 37-49 held-out pairs; ``benchmarks/results/critic_training_miss.json``),
single-order verdicts leave 0.5 and the held-out curve (``curve_agreement``, after every
iteration) rises for a while (seed 0: 0.663 at iteration 8) but falls back: per prompt
0.500 -> 0.480 (gain -0.020, std 0.037, min -0.071), AUC -0.032 (std 0.070); on pairs of the
trained policy (``late_*``) per prompt +0.024 (std 0.034) and null-debiased AUC +0.094 (std
0.044, min +0.055). ``debiased*``: each response also judged against itself, the verdict read
as d(a, b) - (d(a, a) + d(b, b)) / 2 with d = log p(A) - log p(B) (one order, the judge's own
label preference taken out).

With ``--replay-pairs 44`` (``critic.replay_pairs``; ``--tasks 3 --heldout-tasks 32``, otherwise the
flags above; 6 seeds; ``benchmarks/results/critic_training_replay.json``): per prompt +0.006 (std
0.045), per pair +0.041 (std 0.094, min -0.096), on the trained policy's pairs per pair +0.090
(std 0.107, min -0.039). Seeds 0-2 had gained on the trained policy's pairs on every seed (per
pair +0.111 to +0.116); seeds 3-5, run to check that, did not (-0.039 on seeds 3 and 4, whose
training verdicts named one label every iteration). ``--outcome clear`` gave 0-8 verified pairs
per iteration, too few to train on.

With ``--minibatch-size 1024`` (one optimizer step per update on every row; seeds 6-8, 15 iterations,
the replay flags above; ``benchmarks/results/critic_training_fullbatch.json``): AUC +0.057 (std 0.040,
min +0.015), per pair +0.034 (std 0.026, min +0.000), per prompt +0.028 (min -0.006). Run longer
(30 iterations, ``critic_training_fullbatch_30.json``) one seed learned to judge (per prompt 0.671,
AUC 0.733) and two fell back once the policy converged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from toolgym.rubrics import FunctionCritic, rubric_from_dict
from toolgym.rubrics.calibration import roc_auc
from toolgym.rubrics.checks.registry import register_check
from toolgym.rubrics.critics.label import label_agreement, swapped
from toolgym.rubrics.critics.online import verified_pairs
from toolgym.trainers.config import TrainConfig


def digit_share(episode: Any, criterion: Any = None) -> float:
    """Share of the characters the episode's turns wrote that are digits."""
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


@register_check(name="bench_digit_heavy", replace=True)
def bench_digit_heavy(task: Any, episode: Any) -> bool:
    """At least half of what the episode wrote is digits."""
    return digit_share(episode) >= 0.5


@register_check(name="bench_digit_clear", replace=True)
def bench_digit_clear(task: Any, episode: Any) -> bool | None:
    """Mostly digits (at least 65% of what the episode wrote) or mostly not (at most 35%); in between no
    verdict (None: the criterion does not apply, so the episode is in no verified pair)."""
    share = digit_share(episode)
    return True if share >= 0.65 else False if share <= 0.35 else None


CHECKS = {"heavy": "bench_digit_heavy", "clear": "bench_digit_clear"}


def rubric(outcome: str = "heavy") -> Any:
    """The verifiable criterion "heavy" (scored by ``CHECKS[outcome]``) and a function critic of the digit share."""
    return rubric_from_dict({"name": "heavy", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
        {"id": "heavy", "description": "At least half of what the response wrote is digits.", "weight": 1,
         "source": {"type": "check", "check": CHECKS[outcome]}},
        {"id": "digits", "description": "Share of digits written.", "weight": 1, "source": {"type": "critic", "critic": "digits"}}]})


def config(seed: int, args: argparse.Namespace) -> TrainConfig:
    """The run: GRPO with the label-verdict critic trained on ``args.mix`` of each batch's rows."""
    return TrainConfig.from_dict({
        "model": {"seed": seed}, "algorithm": {"group_size": args.group_size, "clip_high": args.clip_high},
        "rollout": {"tasks_per_iteration": args.tasks, "max_new_tokens": 8},
        "optim": {"lr": args.lr, "minibatch_size": args.minibatch_size, "micro_batch_size": 8},
        "run": {"iterations": args.iterations, "seed": seed, "tensorboard": False, "plots": False},
        "critic": {"outcome": "heavy", "train_critic": True, "verdict": "label", "mix_fraction": args.mix,
                   "label_advantage": args.advantage, "label_prompt": args.label_prompt, "loss_weight": args.loss_weight, "extra_updates": args.extra_updates,
                   "replay_pairs": args.replay_pairs, "replay_size": args.replay_size}})


def heldout_items(trainer: Any, first_task: int, tasks: int, seed: int) -> list[tuple]:
    """(A, B, verified winner) of siblings of ``tasks`` held-out tasks, each pair in both orders (adjacent)."""
    episodes = trainer.sampler.rollout(trainer.sampler.task_source(first_task, tasks), group_size=4, temperature=1.0, seed=seed)
    scores = trainer.sampler.score(episodes)
    items: list[tuple] = []
    for g in range(0, len(episodes), 4):
        for p in verified_pairs(scores[g : g + 4], "heavy"):
            a, b = episodes[g + p.a], episodes[g + p.b]
            items += [(a, b, p.winner), (b, a, swapped(p.winner))]
    return items


def judge(trainer: Any, items: list[tuple]) -> dict[str, float]:
    """Label verdicts of ``items`` by the trainer's current model: agreement per prompt and per pair, p(winner), AUC
    (``{}`` without items: a converged policy's siblings may give no verified pair at all)."""
    if not items:
        return {}
    _, verdicts = trainer.critic_loop.label_verdicts(items)
    if any(v is None for v in verdicts):
        raise RuntimeError("a held-out critic prompt does not fit the model's context")
    winners = [it[2] for it in items]
    pair_hits, pair_odds = [], []
    for i in range(0, len(items), 2):  # the first order's "A" is the second order's "B"
        a_odds = verdicts[i].log_odds - verdicts[i + 1].log_odds  # both-order log-odds that the first order's "A" won
        odds = a_odds if winners[i] == "A" else -a_odds  # ... that the verified winner won
        pair_hits.append(1.0 if odds > 0 else 0.5 if odds == 0 else 0.0)
        pair_odds.append(a_odds)
    out = {"agreement": label_agreement(verdicts, winners) or 0.0, "pair": statistics.mean(pair_hits),
           "pair_auc": roc_auc([w == "A" for w in winners[0::2]], pair_odds) or 0.5,
           "p_winner": statistics.mean(v.p(w) for v, w in zip(verdicts, winners, strict=True)),
           "auc": roc_auc([w == "A" for w in winners], [v.p_a for v in verdicts]) or 0.5}
    return {**out, **null_debiased(trainer, items, verdicts)}


def null_debiased(trainer: Any, items: list[tuple], verdicts: list[Any]) -> dict[str, float]:
    """Single-order verdicts with the judge's own label preference taken out: each response is also shown
    against itself (a pair with nothing to prefer, so any preference there is for a label or a position),
    and ``d(a, b) - (d(a, a) + d(b, b)) / 2`` is read, with ``d`` = log p(A) - log p(B). One extra forward per
    response; the other order of the pair is never used."""
    episodes = {id(e): e for it in items for e in it[:2]}
    _, nulls = trainer.critic_loop.label_verdicts([(e, e) for e in episodes.values()])
    null_d = {k: v.log_odds for k, v in zip(episodes, nulls, strict=True)}
    odds = [v.log_odds - (null_d[id(a)] + null_d[id(b)]) / 2 for v, (a, b, _) in zip(verdicts, items, strict=True)]
    hits = [1.0 if (o > 0) == (w == "A") and o != 0 else 0.5 if o == 0 else 0.0 for o, (_, _, w) in zip(odds, items, strict=True)]
    return {"debiased": statistics.mean(hits), "debiased_auc": roc_auc([it[2] == "A" for it in items], odds) or 0.5}


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, float]:
    """One seed: held-out verdicts of the untrained critic, ``args.iterations`` of GRPO with critic rows, verdicts again."""
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = config(seed, args)
    model, tokenizer = load_policy(cfg)
    trainer = build_trainer(cfg, model, tokenizer, rubric=rubric(args.outcome), critics=[FunctionCritic("digits", digit_share)])
    t0 = time.perf_counter()
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    heldout = heldout_items(trainer, 10_000, args.heldout_tasks, seed + 1)  # far past the training task positions
    before = judge(trainer, heldout)
    curve: list[dict[str, float]] = []

    def on_iteration(h: dict[str, float]) -> None:  # the held-out figures after every iteration: is the gain robust?
        curve.append(judge(trainer, heldout))
        print(f"  seed {seed} iteration {int(h['iteration'])}: verified pairs {h.get('critic/verified_pairs', 0):.0f}, "
              f"critic rows {h.get('critic/train_rows', 0):.0f}, train agreement {h.get('critic/train_agreement', float('nan')):.3f}, "
              f"held-out prompt {curve[-1]['agreement']:.3f} pair {curve[-1]['pair']:.3f} pair auc {curve[-1]['pair_auc']:.3f} "
              f"auc {curve[-1]['auc']:.3f} "
              f"debiased {curve[-1]['debiased']:.3f}",
              file=sys.stderr, flush=True)

    history = trainer.train(args.iterations, on_iteration=on_iteration)
    after = curve[-1] if curve else before
    # Pairs of the trained policy (what an on-policy critic judges next) on other held-out tasks, by both critics.
    late = heldout_items(trainer, 20_000, args.heldout_tasks, seed + 2)
    late_after = judge(trainer, late)
    trained = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(initial)
    late_before = judge(trainer, late)
    trainer.model.load_state_dict(trained)
    trainer.close()
    train_agree = [h["critic/train_agreement"] for h in history if "critic/train_agreement" in h]
    return {"seed": seed, "heldout_prompts": len(heldout), "before": before["agreement"], "after": after["agreement"],
            "pair_before": before["pair"], "pair_after": after["pair"], "pair_auc_before": before["pair_auc"],
            "pair_auc_after": after["pair_auc"], "curve_pair_auc": [c["pair_auc"] for c in curve], "p_winner_before": before["p_winner"],
            "debiased_before": before["debiased"], "debiased_after": after["debiased"],
            "debiased_auc_before": before["debiased_auc"], "debiased_auc_after": after["debiased_auc"],
            "curve_debiased": [c["debiased"] for c in curve],
            "p_winner_after": after["p_winner"], "auc_before": before["auc"], "auc_after": after["auc"],
            "train_agreement_first": train_agree[0] if train_agree else float("nan"),
            "train_agreement_last": train_agree[-1] if train_agree else float("nan"),
            "verified_pairs_per_iteration": [h.get("critic/verified_pairs", 0.0) for h in history],
            "critic_rows": sum(h.get("critic/train_rows", 0.0) for h in history), "seconds": time.perf_counter() - t0,
            "heldout_pairs": len(heldout) // 2, "curve_agreement": [c["agreement"] for c in curve],
            "curve_pair": [c["pair"] for c in curve], "curve_auc": [c["auc"] for c in curve],
            "late_pairs": len(late) // 2, **{f"late_{k}_{when}": v for when, fig in (("before", late_before), ("after", late_after))
                                              for k, v in fig.items()}}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, population std and min of ``values``."""
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values), "min": min(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tasks", type=int, default=3, help="tasks per iteration")
    parser.add_argument("--mix", type=float, default=0.85, help="critic.mix_fraction: share of each batch's rows that are critic rows")
    parser.add_argument("--heldout-tasks", type=int, default=12)
    parser.add_argument("--advantage", choices=["constant", "miss", "pair"], default="constant", help="critic.label_advantage")
    parser.add_argument("--label-prompt", choices=["full", "compact"], default="full", help="critic.label_prompt")
    parser.add_argument("--loss-weight", type=float, default=1.0, help="critic.loss_weight")
    parser.add_argument("--extra-updates", type=int, default=0, help="critic.extra_updates")
    parser.add_argument("--outcome", choices=sorted(CHECKS), default="heavy", help="heavy: digits >= 50%%; clear: >= 65%% "
                        "against <= 35%% (episodes in between are in no verified pair)")
    parser.add_argument("--clip-high", type=float, default=0.2, help="algorithm.clip_high: how far one update may raise "
                        "a token's probability ratio (a critic naming one label everywhere needs the other raised)")
    parser.add_argument("--minibatch-size", type=int, default=16, help="optim.minibatch_size: rows per optimizer step (a "
                        "size above the batch makes each update one step on every row, whose ratios are then all 1)")
    parser.add_argument("--replay-pairs", type=int, default=0, help="critic.replay_pairs: past verified pairs added per iteration")
    parser.add_argument("--replay-size", type=int, default=512, help="critic.replay_size: past verified pairs kept")
    parser.add_argument("--group-size", type=int, default=8, help="siblings per task: a group of 8 gives up to 16 verified pairs")
    parser.add_argument("--out", default="benchmarks/results/critic_training.json")
    parser.add_argument("--combine", nargs="+", metavar="JSON", help="no training: tabulate the runs of these result files "
                        "(seeds run as separate processes, e.g. in parallel)")
    args = parser.parse_args()
    if args.combine:  # the runs' own settings (from the first file), not this command's defaults
        parts = [json.loads(Path(f).read_text()) for f in args.combine]
        runs = [r for part in parts for r in part["runs"]]
        vars(args).update({k: v for k, v in parts[0]["args"].items() if k not in ("seeds", "out", "combine")})
        args.seeds = [r["seed"] for r in runs]
    else:
        import torch

        torch.set_num_threads(1)
        runs = []
        for seed in args.seeds:
            runs.append(run_seed(seed, args))
            print(json.dumps(runs[-1]), flush=True)
    summary: dict[str, Any] = {"args": vars(args), "runs": runs}
    print(f"{'figure':<28}{'before':>8}{'after':>8}{'gain mean':>11}{'std':>7}{'min':>8}")
    figures = [("agreement (per prompt)", "before", "after"), ("agreement (pair)", "pair_before", "pair_after"),
               ("p(winner)", "p_winner_before", "p_winner_after"), ("AUC", "auc_before", "auc_after")]
    if all("pair_auc_after" in r for r in runs):  # AUC of the both-order log-odds, one per pair
        figures.insert(2, ("AUC (pair)", "pair_auc_before", "pair_auc_after"))
    if all("debiased_after" in r for r in runs):  # single order, the judge's preference on a null pair taken out
        figures += [("per prompt, null-debiased", "debiased_before", "debiased_after"),
                    ("AUC, null-debiased", "debiased_auc_before", "debiased_auc_after")]
    if all("late_agreement_after" in r for r in runs):  # held-out pairs of the trained policy
        figures += [(f"late {n}", f"late_{k}_before", f"late_{k}_after") for n, k in
                    [("per prompt", "agreement"), ("pair", "pair"), ("pair AUC", "pair_auc"), ("p(winner)", "p_winner"), ("AUC", "auc"),
                     ("debiased", "debiased"), ("debiased AUC", "debiased_auc")] if f"late_{k}_after" in runs[0]]
    for name, b, a in figures:
        gain = spread([r[a] - r[b] for r in runs])
        summary[f"gain_{a}"] = gain
        print(f"{name:<28}{statistics.mean(r[b] for r in runs):>8.3f}{statistics.mean(r[a] for r in runs):>8.3f}"
              f"{gain['mean']:>+11.3f}{gain['std']:>7.3f}{gain['min']:>+8.3f}")
    print(f"{len(runs)} seeds, {args.iterations} iterations, {sum(r['seconds'] for r in runs):.0f} s (sum over seeds)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
