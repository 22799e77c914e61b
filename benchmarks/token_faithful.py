"""How much re-tokenizing would change, and what building prompts from ids costs.

A policy plays multi-turn episodes (UnitConv with a user who always asks for more, so every
episode lasts ``--turns`` turns) on two chat templates. Prompts are built token-faithfully:
the previous turn's prompt and sampled ids plus only the new messages' tokens. For every
turn the script then measures what the old way, re-rendering and re-tokenizing the whole
conversation, would have given:

* ``turn text re-tokenizes differently``: turns whose sampled ids differ from the tokenizer's
  encoding of their own text (BPE splits the model's output differently from how it sampled it);
* ``re-rendered prompt differs``: later turns whose full re-render differs from the prompt the
  policy actually saw (what a trainer re-templating the history would train on);
* prompt-building time per turn: the observation suffix (a fixed-size render) against a full
  render of the conversation so far;
* forks: turns whose prompt did not extend the previous turn (0 expected).

The default policy is a random-weight tiny Kimi-shaped MoE, on each template's own tokenizer
(Hermes: the tiny models' BPE; compact Kimi: the compact tokenizer with atomic digits and
markers). Its output is arbitrary token soup, a worst case for re-tokenization. A trained model writes text closer to the tokenizer's corpus, so
its mismatch rate is lower; pass ``--model DIR`` to measure one.

    python benchmarks/token_faithful.py
    python benchmarks/token_faithful.py --episodes 8 --turns 3   # a quick run
    python benchmarks/token_faithful.py --model toolgym/trainers/checkpoints/tiny-base --templates kimi_compact
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import toolgym
from toolgym.envs.types import UserMessage
from toolgym.policies.hf_model import load_model_and_tokenizer
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model, chat_template, model_config
from toolgym.policies.models.tokenizer import train_compact_tokenizer
from toolgym.policy import SamplingParams
from toolgym.rollouts import run_episodes, sample_tasks
from toolgym.rollouts.rows import TOKEN_FORKS

RESULTS = Path(__file__).parent / "results" / "token_faithful.json"


def chatty_env() -> Any:
    """UnitConv whose user answers every final answer, so episodes run to max_turns."""
    env = toolgym.make("toolgym/unitconv-v0")
    env.unwrapped.on_answer = lambda content: ([UserMessage(content="Please go on.")], None)
    return env


def load(model_dir: Path | None, template: str) -> tuple[Any, Any]:
    """A model folder with the template set, or the random tiny Kimi-shaped MoE on the template's own tokenizer."""
    if model_dir is not None:
        model, tokenizer = load_model_and_tokenizer(model_dir)
        tokenizer.chat_template = chat_template(template)
        return model, tokenizer
    if template == "hermes":
        return load_model_and_tokenizer(cached_tiny_model("kimi"))
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_compact_tokenizer()
    pad, end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    torch.manual_seed(0)
    config = model_config("kimi", vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=[end, pad])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = [end, pad]
    return model, tokenizer


def measure(model_dir: Path | None, template: str, episodes: int, turns: int, max_new_tokens: int) -> dict[str, Any]:
    """Play the episodes on one template and compare faithful prompts with full re-renders."""
    model, tokenizer = load(model_dir, template)
    policy = HFPolicy(model, tokenizer)
    tasks = [t.model_copy(update={"limits": t.limits.model_copy(update={"max_turns": turns})}) for t in sample_tasks("toolgym/unitconv-v0", episodes)]
    played = run_episodes(chatty_env, policy, tasks=tasks, seed=1, sampling=SamplingParams(max_new_tokens=max_new_tokens))
    policy.close()
    text_differs = later = prompt_differs = 0
    suffix_s: list[float] = []
    full_s: list[float] = []
    for ep in played:
        for k, turn in enumerate(ep.turns):
            body = turn.token_ids[:-1] if turn.token_ids and turn.token_ids[-1] in policy.end_ids else turn.token_ids
            text_differs += tokenizer.encode(turn.text, add_special_tokens=False) != body
            if k == 0:
                continue
            history = ep.messages[: turn.observation_start - 1]
            previous = ep.turns[k - 1]
            t0 = time.perf_counter()
            policy.renderer.observation_ids(history[previous.observation_start :], last_sampled=previous.token_ids[-1])
            t1 = time.perf_counter()
            full = policy.renderer.token_ids(history, ep.tools)
            t2 = time.perf_counter()
            suffix_s.append(t1 - t0)
            full_s.append(t2 - t1)
            later += 1
            prompt_differs += full != turn.prompt_token_ids
    n_turns = sum(len(ep.turns) for ep in played)
    return {
        "template": template, "episodes": len(played), "turns": n_turns,
        "turn_text_retokenizes_differently": text_differs / n_turns,
        "rerendered_prompt_differs": prompt_differs / max(later, 1),
        "suffix_ms": 1000 * statistics.mean(suffix_s), "full_render_ms": 1000 * statistics.mean(full_s),
        "mean_prompt_tokens": statistics.mean(len(t.prompt_token_ids) for ep in played for t in ep.turns),
        "forks": int(sum(ep.metrics[TOKEN_FORKS] for ep in played)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder, rendered with each template (default: random tiny MoEs)")
    parser.add_argument("--templates", nargs="+", default=["hermes", "kimi_compact"], choices=["hermes", "kimi_compact"])
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    name = args.model.name if args.model else "random tiny Kimi-shaped MoE, each template on its own tokenizer"
    rows = [measure(args.model, t, args.episodes, args.turns, args.max_new_tokens) for t in args.templates]
    table = Table(title=f"Token-faithful prompts vs full re-render ({name})")
    for column in ("template", "turns", "turn text re-tokenizes differently", "re-rendered prompt differs",
                   "suffix ms/turn", "full render ms/turn", "mean prompt tokens", "forks"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["template"], str(r["turns"]), f"{r['turn_text_retokenizes_differently']:.0%}",
                      f"{r['rerendered_prompt_differs']:.0%}", f"{r['suffix_ms']:.2f}", f"{r['full_render_ms']:.2f}",
                      f"{r['mean_prompt_tokens']:.0f}", str(r["forks"]))
    Console(width=160).print(table)
    results = RESULTS if args.model is None else RESULTS.with_name(f"token_faithful_{args.model.name}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": name, "episodes": args.episodes, "turns": args.turns, "max_new_tokens": args.max_new_tokens,
            "machine": platform.platform(), "python": platform.python_version()}
    results.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
