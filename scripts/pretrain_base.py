"""Pretrain toolgym's tiny base model (see toolgym/trainers/pretrain.py) and save it.

    python scripts/pretrain_base.py --out toolgym/trainers/checkpoints/tiny-base --minutes 25

The defaults made the shipped checkpoint; --minutes caps the training time (the shipped run's
time, steps and loss are in the checkpoint's pretrain.json). A GPU is not needed.
"""

from __future__ import annotations

import argparse
import json

from toolgym.trainers.pretrain import PretrainConfig, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the model to")
    parser.add_argument("--minutes", type=float, default=None, help="stop training after this many minutes")
    parser.add_argument("--epochs", type=float, default=None, help="passes over the data (default: the config's)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the seeds per domain (0.05: a quick run)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps (default: the config's)")
    parser.add_argument("--log-every", type=int, default=None, help="steps per loss-curve point (default: the config's)")
    parser.add_argument("--init", default=None, help="continue training this saved base (keeps its tokenizer)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    parser.add_argument("--max-len", type=int, default=None, help="tokens per row (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per step (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    config = PretrainConfig(seed=args.seed, threads=args.threads, init_from=args.init)
    for field, value in (("lr", args.lr), ("max_len", args.max_len), ("batch_size", args.batch_size)):
        if value is not None:
            setattr(config.sft, field, value)
    config.seeds_per_domain = {k: max(1, int(v * args.scale)) for k, v in config.seeds_per_domain.items()}
    if args.minutes is not None:
        config.sft.time_budget_s = args.minutes * 60
    if args.epochs is not None:
        config.sft.epochs = args.epochs
    if args.warmup is not None:
        config.sft.warmup_steps = args.warmup
    if args.log_every is not None:
        config.sft.log_every = args.log_every
    result = pretrain(args.out, config)
    print(json.dumps({"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1)}))


if __name__ == "__main__":
    main()
