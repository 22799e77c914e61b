"""Training throughput of the GRPO update, against a plain transformers + torch AdamW loop, and
the time split of one RL iteration.

Part 1 (CPU, always): rows from real UnitConv rollouts of the tiny Kimi-shaped MoE are trained
on twice, in the same process, from the same weights:

* **toolgym**: ``update_policy`` (the trainers' step: token log-probs, clipped surrogate,
  per-sequence aggregation over accumulated micro-batches, router aux loss and expert-load
  metrics, skip checks, clipping, AdamW from ``build_optimizer``);
* **plain**: the same loss written inline as a textbook loop over the same micro-batches
  (forward with router logits, log-softmax gather, clipped ratio, ``out.aux_loss`` when the
  model returns one, backward, ``clip_grad_norm_``, ``torch.optim.AdamW``).

Tokens/s counts every non-padding token that goes through forward and backward. The ratio
toolgym / plain is the trainer's overhead (1.0 = none).

Part 2: one ``GRPOTrainer.iteration()`` with the env's catalog rubric, split into generation,
env, scoring and update time (``time/*`` metrics).

Part 3 (only when CUDA is present): the same two updates in bf16 on the ~0.5B-total Kimi
config with synthetic rows, with model-FLOPs utilization ``6 x active params x tokens/s / peak``.

    python benchmarks/train_step.py                  # table + benchmarks/results/train_step.json
    python benchmarks/train_step.py --repeats 5 --tasks 8
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

H200_BF16_PEAK_FLOPS = 989e12
"""Dense bf16 peak of an H100/H200 SXM (NVIDIA data sheet), the MFU denominator."""


def plain_update(model: Any, optimizer: Any, batch: Any, micro: int, clip: float = 0.2) -> None:
    """The reference: one minibatch step written the way a from-scratch script would."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    rows = batch.input_ids.shape[0]
    for i in range(0, rows, micro):
        ids, att = batch.input_ids[i : i + micro], batch.attention_mask[i : i + micro]
        mask, old, adv = batch.loss_mask[i : i + micro, 1:], batch.old_logp[i : i + micro, 1:], batch.advantages[i : i + micro]
        out = model(input_ids=ids, attention_mask=att, output_router_logits=True, use_cache=False)
        logp = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        ratio = torch.exp(logp - old)
        per_tok = -torch.min(ratio * adv[:, None], ratio.clamp(1 - clip, 1 + clip) * adv[:, None]) * mask
        loss = (per_tok.sum(1) / mask.sum(1).clamp(min=1)).sum() / rows
        if getattr(out, "aux_loss", None) is not None:
            loss = loss + 0.001 * out.aux_loss * ids.shape[0] / rows
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def toolgym_update(model: Any, optimizer: Any, batch: Any, micro: int) -> None:
    from toolgym.trainers.grpo import LossSettings, update_policy

    update_policy(model, optimizer, batch, LossSettings(loss="grpo", aux_weight=0.001), minibatch_size=len(batch),
                  micro_batch_size=micro)


def timed(fn: Any, repeats: int, sync: Any = None) -> float:
    """Median seconds of ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(model: Any, batch: Any, micro: int, repeats: int, sync: Any = None) -> dict[str, float]:
    """tokens/s of both updates from the same starting weights."""
    import torch

    from toolgym.trainers.optim import build_optimizer

    tokens = float(batch.attention_mask.sum())
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    opt_ours = build_optimizer(ours, "adamw", lr=1e-5, weight_decay=0.0)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-5, betas=(0.9, 0.95))
    t_ours = timed(lambda: toolgym_update(ours, opt_ours, batch, micro), repeats, sync)
    t_plain = timed(lambda: plain_update(theirs, opt_theirs, batch, micro), repeats, sync)
    return {"tokens": tokens, "toolgym_tokens_per_s": tokens / t_ours, "plain_tokens_per_s": tokens / t_plain,
            "ratio": (tokens / t_ours) / (tokens / t_plain), "toolgym_s": t_ours, "plain_s": t_plain}


def cpu_part(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float]]:
    import random

    import torch

    from toolgym.trainers.batch import make_batch
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.experience import collect
    from toolgym.trainers.run import build_trainer, load_policy

    torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict({
        "algorithm": {"group_size": args.group, "filter_zero_variance": False},
        "rollout": {"tasks_per_iteration": args.tasks, "max_new_tokens": args.new_tokens},
        "optim": {"minibatch_size": args.tasks * args.group, "micro_batch_size": args.micro},
        "run": {"tensorboard": False, "plots": False},
    })
    model, tokenizer = load_policy(cfg)
    trainer = build_trainer(cfg, model, tokenizer)
    split = trainer.iteration()  # part 2: one RL iteration, timed by phase
    episodes = trainer.sampler.rollout(trainer.sampler.task_source(0, args.tasks), group_size=args.group, temperature=1.0, seed=1)
    collected = collect(episodes, trainer.sampler.score(episodes), args.group, budget=None, penalty=0.0)
    rows = [r for g in collected.groups for s in g for r in s.rows]
    rng = random.Random(0)
    batch = make_batch(rows, trainer.sampler.pad_id, advantages=[rng.gauss(0, 1) for _ in rows], rewards=[0.0] * len(rows))
    trainer.close()
    result = compare(model, batch, args.micro, args.repeats)
    result.update({"rows": len(rows), "mean_row_tokens": result["tokens"] / max(1, len(rows)), "micro_batch": args.micro,
                   "threads": args.threads})
    return result, {k: v for k, v in split.items() if k.startswith("time/")}


def gpu_part(args: argparse.Namespace) -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import count_parameters, model_config
    from toolgym.trainers.batch import Batch

    config = model_config("kimi", "0.5b")
    params = count_parameters(config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda()
    rows, width = args.gpu_rows, args.gpu_tokens
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, config.vocab_size, (rows, width), generator=g)
    mask = torch.zeros(rows, width)
    mask[:, width // 4 :] = 1  # a prompt quarter, then sampled tokens
    batch = Batch(input_ids=ids.cuda(), attention_mask=torch.ones_like(ids).cuda(), loss_mask=mask.cuda(),
                  old_logp=torch.full((rows, width), -3.0).cuda() * mask.cuda(), advantages=torch.randn(rows, generator=g).cuda(),
                  rewards=torch.zeros(rows).cuda(), baselines=torch.zeros(rows).cuda())
    result = compare(model, batch, args.gpu_micro, args.repeats, sync=torch.cuda.synchronize)
    flops = 6 * params["active"]
    result.update({"device": torch.cuda.get_device_name(0), "dtype": "bfloat16", "params_total": params["total"],
                   "params_active": params["active"], "rows": rows, "row_tokens": width,
                   "toolgym_mfu": flops * result["toolgym_tokens_per_s"] / H200_BF16_PEAK_FLOPS,
                   "plain_mfu": flops * result["plain_tokens_per_s"] / H200_BF16_PEAK_FLOPS})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-rows", type=int, default=16)
    parser.add_argument("--gpu-tokens", type=int, default=1024)
    parser.add_argument("--gpu-micro", type=int, default=8)
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()

    cpu, split = cpu_part(args)
    gpu = None if args.skip_gpu else gpu_part(args)
    console = Console(width=150)
    table = Table(title="GRPO update throughput: toolgym update_policy vs a plain transformers + AdamW loop")
    for col in ("setting", "tokens/step", "toolgym tok/s", "plain tok/s", "toolgym/plain", "MFU toolgym", "MFU plain"):
        table.add_column(col, justify="right")
    table.add_row(f"tiny kimi MoE, CPU fp32, {cpu['threads']} threads", f"{cpu['tokens']:.0f}", f"{cpu['toolgym_tokens_per_s']:.0f}",
                  f"{cpu['plain_tokens_per_s']:.0f}", f"{cpu['ratio']:.2f}", "-", "-")
    if gpu:
        table.add_row(f"0.5B kimi MoE, {gpu['device']} bf16", f"{gpu['tokens']:.0f}", f"{gpu['toolgym_tokens_per_s']:.0f}",
                      f"{gpu['plain_tokens_per_s']:.0f}", f"{gpu['ratio']:.2f}", f"{gpu['toolgym_mfu']:.1%}", f"{gpu['plain_mfu']:.1%}")
    console.print(table)
    phases = Table(title="one GRPO iteration (catalog rubric), seconds by phase")
    for key in split:
        phases.add_column(key.removeprefix("time/"), justify="right")
    phases.add_row(*(f"{v:.2f}" for v in split.values()))
    console.print(phases)
    if gpu is None:
        console.print("no CUDA device: the bf16 0.5B part was not run")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": platform.platform(), "processor": platform.processor(), "args": vars(args), "cpu": cpu,
              "iteration_split_s": split, "gpu": gpu}
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
