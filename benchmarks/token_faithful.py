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
* prompt-building time per turn: ``ChatRenderer.next_prompt`` (the deployment render compared
  with the decoded prefix, then only the new text tokenized) against a full render and tokenization;
* forks: turns whose prompt did not extend the previous turn (0 expected).

``--families`` measures instead the two answers to templates that rewrite history (toolgym's test
templates of each family, ``tests/policies/templates``, on their in-process tokenizers), on a
conversation of parallel calls, an answer and ``--follow-ups`` user follow-ups each with a call:
``new_row`` (prompts equal deployment; rows start where history is rewritten) costs rows and
re-prefilled tokens; ``keep_row`` (one row) costs turns whose prompt differs from deployment.

The default policy is a random-weight tiny Kimi-shaped MoE, on each template's own tokenizer
(Hermes: the tiny models' BPE; compact Kimi: the compact tokenizer with atomic digits and
markers). Its output is arbitrary token soup, a worst case for re-tokenization. A trained model writes text closer to the tokenizer's corpus, so
its mismatch rate is lower; pass ``--model DIR`` to measure one.

    python benchmarks/token_faithful.py
    python benchmarks/token_faithful.py --episodes 8 --turns 3   # a quick run
    python benchmarks/token_faithful.py --model toolgym/trainers/checkpoints/tiny-base --templates kimi_compact
    python benchmarks/token_faithful.py --families --follow-ups 4
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
            prefix = [*(previous.prompt_token_ids or []), *(previous.token_ids or [])]
            t0 = time.perf_counter()
            policy.renderer.next_prompt(history, ep.tools, prefix_ids=prefix, prefix_messages=previous.observation_start)
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


def families_table(follow_ups: int) -> list[dict[str, Any]]:
    """new_row against keep_row for every test family (see the module docstring)."""
    import importlib.util
    import sys

    from toolgym.policies.template_check import check_template
    from toolgym.rollouts.episode import Episode, TurnRecord
    from toolgym.rollouts.rows import episode_to_rows

    where = Path(__file__).parents[1] / "tests" / "policies" / "template_families.py"
    spec = importlib.util.spec_from_file_location("template_families", where)
    families = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["template_families"] = families
    spec.loader.exec_module(families)  # type: ignore[union-attr]
    rows = []
    for name, fam in families.FAMILIES.items():
        row: dict[str, Any] = {"family": name}
        for mode in ("new_row", "keep_row"):
            report = check_template(families.family_tokenizer(name), end_ids=families.end_ids(name), tool_format=fam.tool_format,
                                    chat_template_kwargs=fam.kwargs, history_rewrite=mode, follow_ups=follow_ups)
            turns = [TurnRecord(text="", prompt_token_ids=t.prompt_ids, token_ids=t.sampled_ids, logprobs=[0.0] * len(t.sampled_ids))
                     for t in report.turns]
            episode = Episode(id="e", env_id="x", task=toolgym.Task(id="t", instruction="i"), seed=0, turns=turns,
                              stop_reason=toolgym.StopReason.ANSWERED)
            built = episode_to_rows(episode)
            row.update({f"{mode}_rows": len(built), f"{mode}_tokens": sum(len(r) for r in built)})
            if mode == "keep_row":
                row["keep_row_turns_off_deployment"] = sum(t.start == "keep_row" for t in report.turns)
        row["turns"] = len(report.turns)
        rows.append(row)
    return rows


def print_families(rows: list[dict[str, Any]], follow_ups: int) -> None:
    table = Table(title=f"Templates that rewrite history: new_row vs keep_row ({follow_ups} follow-ups)")
    for column in ("family", "turns", "new_row rows", "new_row tokens", "keep_row tokens", "token cost of new_row",
                   "keep_row turns off deployment"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["family"], str(r["turns"]), str(r["new_row_rows"]), str(r["new_row_tokens"]), str(r["keep_row_tokens"]),
                      f"{r['new_row_tokens'] / r['keep_row_tokens']:.2f}x", str(r["keep_row_turns_off_deployment"]))
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder, rendered with each template (default: random tiny MoEs)")
    parser.add_argument("--templates", nargs="+", default=["hermes", "kimi_compact"], choices=["hermes", "kimi_compact"])
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--families", action="store_true", help="measure new_row against keep_row on every test family")
    parser.add_argument("--follow-ups", type=int, default=4, help="--families: user follow-ups in the conversation")
    args = parser.parse_args()
    if args.families:
        family_rows = families_table(args.follow_ups)
        print_families(family_rows, args.follow_ups)
        out = RESULTS.with_name("token_faithful_families.json")
        meta = {"follow_ups": args.follow_ups, "machine": platform.platform(), "python": platform.python_version()}
        out.write_text(json.dumps({"meta": meta, "rows": family_rows}, indent=2) + "\n")
        print(f"wrote {out}")
        return
    name = args.model.name if args.model else "random tiny Kimi-shaped MoE, each template on its own tokenizer"
    rows = [measure(args.model, t, args.episodes, args.turns, args.max_new_tokens) for t in args.templates]
    table = Table(title=f"Token-faithful prompts vs full re-render ({name})")
    for column in ("template", "turns", "turn text re-tokenizes differently", "re-rendered prompt differs",
                   "next_prompt ms/turn", "full render ms/turn", "mean prompt tokens", "forks"):
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
