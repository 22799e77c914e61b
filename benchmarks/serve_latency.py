"""Latency of a short request that arrives behind a long one, ``toolgym serve`` over real HTTP.

A long request (``--long`` tokens) is sent to the server; once it has decoded a few tokens, a
short request (``--short`` tokens) follows. The table gives the short request's wall-clock
latency and the long one's, for continuous batching (the default: the short request joins
the running batch at the next decode step) and static batching (``continuous=False``: it waits
until the long one's batch ends). The model's end-of-turn id is switched off so that every
request runs exactly its ``max_tokens``. Each cell is the median of ``--repeats`` runs.

    python benchmarks/serve_latency.py               # table + benchmarks/results/serve_latency.json
    python benchmarks/serve_latency.py --long 200 800 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.serve import serve_in_thread

PROMPT = "convert three miles to kilometres and report the answer with two decimals " * 4


def one_run(client: httpx.Client, long_tokens: int, short_tokens: int) -> dict[str, float]:
    """Seconds the short and the long request took, the short one sent while the long one decodes."""
    times: dict[str, float] = {}

    def long_request() -> None:
        start = time.perf_counter()
        answer = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": long_tokens, "seed": 1})
        assert answer.json()["usage"]["completion_tokens"] == long_tokens, answer.text[:300]
        times["long_s"] = time.perf_counter() - start

    thread = threading.Thread(target=long_request)
    thread.start()
    start_steps = client.get("/health").json()["steps"]
    while client.get("/health").json()["steps"] < start_steps + 3:  # the long request is decoding
        time.sleep(0.002)
    start = time.perf_counter()
    answer = client.post("/v1/completions", json={"prompt": "three miles", "max_tokens": short_tokens, "seed": 2})
    times["short_s"] = time.perf_counter() - start
    assert answer.json()["usage"]["completion_tokens"] == short_tokens, answer.text[:300]
    thread.join()
    return times


def measure(policy: HFPolicy, continuous: bool, long_tokens: int, short_tokens: int, repeats: int) -> dict[str, object]:
    with serve_in_thread(policy, max_batch=8, wait_ms=0, continuous=continuous) as url, httpx.Client(base_url=url, timeout=600) as client:
        client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 4, "seed": 0})  # warm-up
        runs = [one_run(client, long_tokens, short_tokens) for _ in range(repeats)]
    return {
        "batching": "continuous" if continuous else "static", "long_tokens": long_tokens, "short_tokens": short_tokens,
        "short_s": round(statistics.median(r["short_s"] for r in runs), 3),
        "long_s": round(statistics.median(r["long_s"] for r in runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="kimi", choices=["kimi", "qwen3"], help="tiny model shape")
    parser.add_argument("--long", type=int, nargs="+", default=[200, 800, 1500], help="tokens of the long request")
    parser.add_argument("--short", type=int, default=4, help="tokens of the short request")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell (median reported)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_latency.json")
    args = parser.parse_args()

    import torch

    policy = HFPolicy.from_pretrained(cached_tiny_model(args.kind))
    policy.end_ids = set()  # no early end of turn: every request runs exactly its max_tokens
    rows = [measure(policy, continuous, n, args.short, args.repeats) for n in args.long for continuous in (False, True)]
    table = Table(title=f"{args.short}-token request behind a long one, toolgym serve, tiny {args.kind} MoE, CPU ({torch.get_num_threads()} threads)")
    for column in ("batching", "long request tokens", "short request s", "long request s"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["batching"]), str(r["long_tokens"]), f"{r['short_s']:.3f}", f"{r['long_s']:.2f}")
    Console().print(table)
    result = {
        "benchmark": "serve_latency", "model": f"tiny-{args.kind}", "short_tokens": args.short, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "device": "cpu", "machine": platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
