"""Critic training: held-out agreement of the tiny MoE judging pairs of its own episodes, before and after.

The task is designed so a tiny model *can* learn to judge it. The policy answers UnitConv tasks
with a few sampled tokens; the verifiable outcome ``heavy`` is a registered check (at least half
of what the episode wrote is digits), so it varies among siblings even for a random model and
the evidence sits in the short transcripts the critic prompt shows. A random tiny model writes
no JSON at all, so each seed starts with a *format* warm start: supervised rows of the real
``pairwise_prompt`` answered with the JSON verdict of a coin flip (the format, not the answer,
so held-out agreement after it is chance). Then ``toolgym`` GRPO runs with
``critic.train_critic``: every iteration, verified pairs of the policy's own siblings become
critic prompts, the judgements that name the verified winner get reward 1, and those rows join
the policy's batch (self-critique). Held-out agreement: greedy judgements of pairs from held-out
tasks, both A/B orders; an unparseable judgement counts as not agreeing and is reported apart.

    python benchmarks/critic_training.py --seeds 0 1 2 --iterations 6

Measured (2-core CPU under load, ``benchmarks/results/critic_training.json``): with the default
6-epoch warm start (38 SFT steps on 50 rows) the tiny model does not yet write a complete verdict
(greedy output degenerates to ``{"criteria": "hea": "heavy", ...``), so on 3 seeds (28/34/36
held-out pairs) every held-out judgement is unparseable before and after 6 iterations, every
critic sample is counted in ``critic/train_unscorable`` and no critic row is trained: agreement
0.0 -> 0.0. The critic cannot learn before the format does; a longer warm start (``--sft-epochs``)
is the next thing to measure. ``--seeds 0 --iterations 4 --sft-epochs 14`` (88 steps, 331 s) does
teach the format: 0 unparseable held-out verdicts, agreement 0.500 (chance: 28 pairs in both
orders) before and 0.500 after, but its training iterations still logged no parsed critic
sample (``critic/train_rows`` 0; samples at temperature 1.0), so nothing was trained yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from toolgym.envs.types import AssistantMessage
from toolgym.policy import PolicyRequest, SamplingParams
from toolgym.rubrics import FunctionCritic, rubric_from_dict
from toolgym.rubrics.checks.registry import register_check
from toolgym.rubrics.critics.online import verified_pairs
from toolgym.rubrics.critics.pairwise import pairwise_prompt
from toolgym.rubrics.critics.transcript import render_transcript
from toolgym.trainers.config import TrainConfig
from toolgym.trainers.critic_loop import TRANSCRIPT_CHARS, judgement_reward


def digit_share(episode, criterion=None) -> float:
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


@register_check(name="bench_digit_heavy", replace=True)
def bench_digit_heavy(task, episode) -> bool:
    """At least half of what the episode wrote is digits."""
    return digit_share(episode) >= 0.5


RUBRIC = rubric_from_dict({"name": "heavy", "env_ids": ["toolgym/unitconv-v0"], "criteria": [
    {"id": "heavy", "description": "At least half of what the response wrote is digits.", "weight": 1,
     "source": {"type": "check", "check": "bench_digit_heavy"}},
    {"id": "digits", "description": "Share of digits written.", "weight": 1, "source": {"type": "critic", "critic": "digits"}}]})


def config(seed: int, iterations: int) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"seed": seed}, "algorithm": {"group_size": 4},
        "rollout": {"tasks_per_iteration": 4, "max_new_tokens": 8},
        "optim": {"lr": 5e-4, "minibatch_size": 8, "micro_batch_size": 4},
        "run": {"iterations": iterations, "seed": seed, "tensorboard": False, "plots": False},
        "critic": {"outcome": "heavy", "train_critic": True, "mix_fraction": 0.5, "max_new_tokens": 40}})


def pair_items(trainer, first_task: int, tasks: int, seed: int) -> list[tuple]:
    """(A, B, verified winner) from siblings of ``tasks`` tasks starting at ``first_task`` (both orders)."""
    episodes = trainer.sampler.rollout(trainer.sampler.task_source(first_task, tasks),
                                       group_size=4, temperature=1.0, seed=seed)
    scores = trainer.sampler.score(episodes)
    items = []
    for g in range(0, len(episodes), 4):
        for p in verified_pairs(scores[g : g + 4], "heavy"):
            a, b = episodes[g + p.a], episodes[g + p.b]
            items += [(a, b, p.winner), (b, a, "B" if p.winner == "A" else "A")]
    return items


def prompt(item) -> list:
    a, b, _ = item
    return pairwise_prompt(RUBRIC, [RUBRIC.criteria[0]], a.task.instruction,
                           render_transcript(a, TRANSCRIPT_CHARS, include_opening=False),
                           render_transcript(b, TRANSCRIPT_CHARS, include_opening=False))


def heldout_agreement(trainer, items) -> dict[str, float]:
    """Greedy judgements of the held-out pairs: share agreeing, share unparseable."""
    trainer.model.eval()
    sampling = SamplingParams(max_new_tokens=40, temperature=0.0)  # the verdict is ~30 tokens
    requests = [PolicyRequest(episode_id=f"heldout/{i}", messages=prompt(it), seed=i, sampling=sampling) for i, it in enumerate(items)]
    turns = asyncio.run(trainer.sampler.policy.generate(requests))
    rewards = [judgement_reward(t.text, RUBRIC.criteria[0], it[2], 1.0) for t, it in zip(turns, items, strict=True)]
    return {"agreement": sum(r == 1.0 for r in rewards) / len(items),
            "unparseable": sum(r is None for r in rewards) / len(items)}


def format_warm_start(trainer, items, seed: int, epochs: float = 6) -> None:
    """SFT on critic prompts answered with a coin-flip verdict in the judge's JSON format."""
    from toolgym.trainers.sft import SFTConfig, conversation_row, train_rows

    rng = random.Random(seed)
    rows = []
    for it in items:
        verdict = json.dumps({"criteria": [{"id": "heavy", "winner": rng.choice("AB")}]})
        rows.append(conversation_row(trainer.sampler.policy.tokenizer, [*prompt(it), AssistantMessage(content=verdict, raw=verdict)]))
    train_rows(trainer.model, rows, SFTConfig(lr=3e-3, batch_size=8, epochs=epochs, warmup_steps=3, seed=seed, max_len=1024),
               pad_id=trainer.sampler.pad_id)


def run_seed(seed: int, iterations: int, sft_epochs: float = 6) -> dict[str, float]:
    from toolgym.trainers.run import build_trainer, load_policy

    cfg = config(seed, iterations)
    model, tokenizer = load_policy(cfg)
    trainer = build_trainer(cfg, model, tokenizer, rubric=RUBRIC, critics=[FunctionCritic("digits", digit_share)])
    t0 = time.perf_counter()
    heldout = pair_items(trainer, 10_000, 6, seed + 1)  # task positions far past the training ones
    warm = pair_items(trainer, 20_000, 8, seed + 2)
    untrained = heldout_agreement(trainer, heldout)
    format_warm_start(trainer, warm, seed, sft_epochs)
    before = heldout_agreement(trainer, heldout)
    history = trainer.train(iterations)
    after = heldout_agreement(trainer, heldout)
    trainer.close()
    train_agree = [h[k] for h in history for k in ["critic/train_agreement"] if k in h]
    return {"seed": seed, "heldout_pairs": len(heldout), "untrained": untrained["agreement"],
            "untrained_unparseable": untrained["unparseable"], "before": before["agreement"],
            "before_unparseable": before["unparseable"], "after": after["agreement"], "after_unparseable": after["unparseable"],
            "train_agreement_first": train_agree[0] if train_agree else float("nan"),
            "train_agreement_last": train_agree[-1] if train_agree else float("nan"),
            "critic_rows": sum(h.get("critic/train_rows", 0.0) for h in history), "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--sft-epochs", type=float, default=6, help="passes of the format warm start")
    parser.add_argument("--out", default="benchmarks/results/critic_training.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        results.append(run_seed(seed, args.iterations, args.sft_epochs))
        print(json.dumps(results[-1]), flush=True)
    gains = [r["after"] - r["before"] for r in results]
    summary = {"iterations": args.iterations, "sft_epochs": args.sft_epochs, "seeds": args.seeds, "runs": results,
               "gain_mean": statistics.mean(gains), "gain_std": statistics.pstdev(gains)}
    print(f"held-out agreement after format warm start {statistics.mean(r['before'] for r in results):.3f}, "
          f"after {args.iterations} critic-training iterations {statistics.mean(r['after'] for r in results):.3f}; "
          f"gain {summary['gain_mean']:+.3f} +- {summary['gain_std']:.3f} over {len(results)} seeds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
