"""Routing replay (R3) on the tiny MoE policies: router agreement per layer and the log-prob gap.

Rows come from real UnitConv rollouts of the tiny Kimi-shaped (DeepSeek-V3) and Qwen3-MoE
models through ``HFPolicy(record_routing=True)``: the rollout loop keeps each sampled token's
experts on its turn, ``episode_to_rows`` aligns them with the row's tokens. The training
forward (fp32, the trainer's ``training_forward``) then scores the rows twice: with the
router choosing freely, and replaying the recorded experts. Three sources of mismatch:

* ``same``: generation and training in fp32 with the same weights (the control: identical
  routing, so replay changes nothing);
* ``bf16``: generation on a bf16 copy of the weights, training in fp32 (an inference engine
  in another dtype);
* ``one_step``: generation in fp32, then one AdamW step (``--step-lr``, default 1e-5) of the
  GRPO update on those rows before the training forward (a sample one policy version stale,
  as in async RL). The gap then also holds the genuine policy change, which replay cannot
  remove: at large steps (1e-3 on these random-init tiny models, router agreement 0.5-0.8)
  replay no longer shrinks it.

Columns: router agreement per MoE layer (fraction of recorded top-k slots the training router
itself picks), the agreement under replay (experts the forward used; 1.0 means replay forced
every recorded slot), and mean ``|log pi_train - log pi_behaviour|`` over the sampled tokens
without and with replay. Prompt tokens are routed by the training router in both (only the
positions that sampled a token are replayed).

    python benchmarks/routing_replay.py            # table + benchmarks/results/routing_replay.json
    python benchmarks/routing_replay.py --tasks 8 --kinds kimi
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SOURCES = ("same", "bf16", "one_step")


def rollout_rows(model: Any, tokenizer: Any, tasks: int, seed: int, max_new_tokens: int) -> list[Any]:
    """Token rows (with routing records) of UnitConv episodes sampled by ``model``."""
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policy import SamplingParams
    from toolgym.rollouts.loop import run_episodes
    from toolgym.rollouts.rows import episodes_to_rows

    policy = HFPolicy(model, tokenizer, max_batch_size=64, record_routing=True)
    try:
        episodes = run_episodes("toolgym/unitconv-v0", policy, n=tasks, seed=seed, group_size=2,
                                sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0))
    finally:
        policy.close()
    return episodes_to_rows(episodes)


def one_step(model: Any, batch: Any, lr: float) -> Any:
    """A copy of ``model`` after one GRPO step (AdamW at ``lr``) on ``batch``: the next policy version."""
    import torch

    from toolgym.trainers.grpo import LossSettings, update_policy

    newer = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(newer.parameters(), lr=lr)
    update_policy(newer, optimizer, batch, LossSettings(), minibatch_size=len(batch), micro_batch_size=4)
    return newer.eval()


def measure(kind: str, source: str, tasks: int, seed: int, max_new_tokens: int, lr: float) -> dict[str, Any]:
    import torch

    from toolgym.policies.hf_model import load_model_and_tokenizer
    from toolgym.policies.models import cached_tiny_model
    from toolgym.trainers import metrics as m
    from toolgym.trainers.batch import make_batch
    from toolgym.trainers.routing import measure_routing

    model, tokenizer = load_model_and_tokenizer(cached_tiny_model(kind))  # type: ignore[arg-type]
    model.eval()
    generator = copy.deepcopy(model).to(torch.bfloat16) if source == "bf16" else model
    t0 = time.perf_counter()
    rows = rollout_rows(generator, tokenizer, tasks, seed, max_new_tokens)
    generation_s = time.perf_counter() - t0
    advantages = [1.0 if i % 2 else -1.0 for i in range(len(rows))]
    batch = make_batch(rows, tokenizer.pad_token_id or 0, advantages=advantages, rewards=[0.0] * len(rows))
    trained = one_step(model, batch, lr) if source == "one_step" else model
    stats = measure_routing(trained, batch.input_ids, batch.attention_mask, batch.routed_experts, batch.old_logp,
                            batch.loss_mask)
    layers = sorted(int(k.split("/")[1][5:]) for k in stats if k.endswith("/router_agreement") and "/layer" in k)
    return {
        "kind": kind, "source": source, "rows": len(rows), "sampled_tokens": int(batch.loss_mask.sum()),
        "generation_s": round(generation_s, 2),
        "router_agreement": {f"layer{i}": stats[m.ROUTING_LAYER_ROUTER_AGREEMENT.format(layer=i)] for i in layers},
        "replay_agreement": {f"layer{i}": stats[m.ROUTING_LAYER_AGREEMENT.format(layer=i)] for i in layers},
        "logprob_gap_free": stats[m.ROUTING_GAP_FREE], "logprob_gap_replay": stats[m.ROUTING_GAP_REPLAY],
        "recorded_frac": stats[m.ROUTING_RECORDED_FRAC],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["kimi", "qwen3"], choices=["kimi", "qwen3"])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--tasks", type=int, default=4, help="UnitConv tasks (2 episodes each) per measurement")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-lr", type=float, default=1e-5, help="AdamW rate of the one_step update")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "routing_replay.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    results = [measure(kind, source, args.tasks, args.seed, args.max_new_tokens, args.step_lr)
               for kind in args.kinds for source in args.sources]
    table = Table(title="Routing replay: generation vs training forward (fp32 training)")
    for column in ("model", "mismatch", "tokens", "router agreement / layer", "agreement replayed",
                   "|Δlogp| free", "|Δlogp| replay", "free / replay"):
        table.add_column(column, justify="right")
    for r in results:
        ratio = r["logprob_gap_free"] / r["logprob_gap_replay"] if r["logprob_gap_replay"] > 0 else float("nan")
        table.add_row(
            r["kind"], r["source"], str(r["sampled_tokens"]),
            " ".join(f"{v:.4f}" for v in r["router_agreement"].values()),
            f"{min(r['replay_agreement'].values()):.4f}",
            f"{r['logprob_gap_free']:.2e}", f"{r['logprob_gap_replay']:.2e}", f"{ratio:.2f}",
        )
    Console(width=160).print(table)
    out = {"machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
           "command": "python benchmarks/routing_replay.py " + " ".join(
               f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
               for k, v in vars(args).items() if k != "out"),
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
