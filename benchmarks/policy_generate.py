"""Generated tokens per second: ``HFPolicy`` against plain ``model.generate`` on the same tiny MoE.

Both decode the same left-padded UnitConv prompts (system prompt, six tool specs, the user's
task: about 720 tokens each) with a KV cache, sampling at temperature 1, for up to
``--new-tokens`` tokens, stopping at the end-of-turn token. ``HFPolicy`` does more per token
(its own per-request generator, raw log-probs, token-faithful records); ``model.generate``
is the reference. Each cell is the median of ``--repeats`` timed runs after one warm-up.

    python benchmarks/policy_generate.py                 # table + benchmarks/results/policy_generate.json
    python benchmarks/policy_generate.py --kind qwen3 --batches 1 8 32 --new-tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policy import PolicyRequest, SamplingParams


def requests(batch: int, new_tokens: int) -> list[PolicyRequest]:
    env = toolgym.make("toolgym/unitconv-v0")
    out = []
    for i in range(batch):
        obs, _ = env.reset(seed=i)
        sampling = SamplingParams(max_new_tokens=new_tokens, temperature=1.0)
        out.append(PolicyRequest(episode_id=str(i), messages=list(env.messages), tools=obs.tools, seed=i, sampling=sampling))
    return out


def time_policy(policy: HFPolicy, reqs: list[PolicyRequest]) -> tuple[float, int]:
    start = time.perf_counter()
    turns = asyncio.run(policy.generate(reqs))
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(t.token_ids or []) for t in turns)


def time_generate(policy: HFPolicy, reqs: list[PolicyRequest], new_tokens: int) -> tuple[float, int]:
    import torch

    tok = policy.tokenizer
    prompts = [policy.render(r) for r in reqs]
    batch = tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt")  # left padding (tokenizer default)
    end_ids = sorted(policy.end_ids)

    def run():  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            return policy.model.generate(
                **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                eos_token_id=end_ids, pad_token_id=policy.pad_id,
            )

    start = time.perf_counter()
    # On the policy's own worker thread, like HFPolicy: one OpenMP pool for both contenders.
    out = policy.executor.submit(run).result()
    elapsed = time.perf_counter() - start
    generated = out[:, batch["input_ids"].shape[1] :]  # (B, N)
    count = 0
    for row in generated.tolist():
        ends = [i for i, t in enumerate(row) if t in end_ids]
        count += ends[0] + 1 if ends else len(row)
    return elapsed, count


def measure(policy: HFPolicy, batch: int, new_tokens: int, repeats: int) -> dict[str, float]:
    reqs = requests(batch, new_tokens)
    cells: dict[str, float] = {"batch": batch}
    for name, run in (("hf_policy", lambda: time_policy(policy, reqs)), ("model_generate", lambda: time_generate(policy, reqs, new_tokens))):
        run()  # warm-up
        rates = []
        for _ in range(repeats):
            elapsed, tokens = run()
            rates.append(tokens / elapsed)
        cells[f"{name}_tok_s"] = round(statistics.median(rates), 1)
    cells["ratio"] = round(cells["hf_policy_tok_s"] / cells["model_generate_tok_s"], 2)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="kimi", choices=["kimi", "qwen3"], help="tiny model shape")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes to time")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per cell (median reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "policy_generate.json")
    args = parser.parse_args()

    import torch

    policy = HFPolicy.from_pretrained(cached_tiny_model(args.kind), max_batch_size=max(args.batches))
    rows = [measure(policy, b, args.new_tokens, args.repeats) for b in args.batches]
    table = Table(title=f"generated tokens/s, tiny {args.kind} MoE, {args.new_tokens} new tokens, CPU ({torch.get_num_threads()} threads)")
    for column in ("batch", "HFPolicy tok/s", "model.generate tok/s", "HFPolicy / generate"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["batch"]), f"{r['hf_policy_tok_s']:.0f}", f"{r['model_generate_tok_s']:.0f}", f"{r['ratio']:.2f}")
    Console().print(table)
    params = sum(p.numel() for p in policy.model.parameters())
    result = {
        "benchmark": "policy_generate", "model": f"tiny-{args.kind}", "parameters": params, "new_tokens": args.new_tokens,
        "repeats": args.repeats, "torch_threads": torch.get_num_threads(), "device": "cpu",
        "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
