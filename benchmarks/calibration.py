"""Calibration of critics against verifiable outcomes on shipped domains.

For each domain, episodes come from a mix of policies: gold replays, four degraded replays of
the gold solution (a lying one that skips the last action but claims success, one with a wrong
final answer, one with a perturbed number, one padded with extra calls) and a chaos policy.
Every episode is scored with the domain's catalog rubric plus one extra judge criterion. The
verifiable criterion ``state`` (``final_state_matches_gold``) is the ground truth; the report
says how well each critic criterion agrees with it and which weights best predict it.

THE JUDGE HERE IS A FAKE. ``HeuristicJudge`` is a deterministic, seeded stand-in for an LLM
judge: it reads only the judge prompt (transcript and reference answer), like a real judge,
grades with simple rules, and adds noise (random scores, unparseable replies). It runs through
the real ``LLMJudge`` path (prompt, JSON parsing, retries, cache, budget). Its numbers show the
calibration machinery and typical failure modes, not the quality of any model. With
``--tiny-llm`` (default on when transformers is installed) a random tiny local MoE model also
judges a few episodes: it cannot write valid JSON, and the point is that every one of its
judgements comes out unscorable and counted, never as a 0.

    python benchmarks/calibration.py                     # tables, JSON, PNG
    python benchmarks/calibration.py --tasks 100 --no-tiny-llm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import toolgym  # noqa: F401  (registers the catalog)
from toolgym.envs.types import Task
from toolgym.policy import PolicyRequest, PolicyTurn, SamplingParams
from toolgym.rollouts import ChaosPolicy, Episode, ScriptedPolicy, gold_script, run_episodes, sample_tasks
from toolgym.rubrics import JudgeBudget, LLMJudge, Rubric, rubric_for, score_episodes_sync, score_metrics
from toolgym.rubrics.calibration import calibrate, roc_auc
from toolgym.rubrics.checks import numbers_in
from toolgym.rubrics.report import render_calibration

HERE = Path(__file__).parent
ROOT = HERE.parent
VARIANTS = ("gold", "gold", "lie_skip_last", "wrong_answer", "perturbed", "padded", "chaos")
"""Policy mix, drawn per task with a seeded RNG (gold twice: about 2 in 7 episodes)."""
JUDGE_CRITERION = {
    "id": "judge_correct",
    "description": "The task was completed correctly: the needed actions succeeded and the answer states the right result.",
    "kind": "core",
    "weight": 1,
    "scale": {"low": 1, "high": 5, "labels": {"1": "not done", "3": "partly done", "5": "fully done"}},
    "source": {"type": "critic", "critic": "judge"},
}


# ---------------------------------------------------------------------------- episodes


def degraded_script(task: Task, variant: str, rng: random.Random) -> list[str]:
    """The gold script of ``task``, broken in the way ``variant`` says."""
    turns = gold_script(task)
    calls, answer = turns[:-1], turns[-1]
    if variant == "lie_skip_last":  # the last action is skipped, the answer still claims success
        return calls[:-1] + [answer]
    if variant == "wrong_answer":
        return calls + ["All done."]
    if variant == "padded":
        return calls[:1] * 3 + calls + [answer]
    if variant == "perturbed":
        last = task.gold_actions[-1]
        numeric = [k for k, v in last.arguments.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numeric:
            return calls[:-1] + [answer]
        args = {**last.arguments, numeric[0]: round(last.arguments[numeric[0]] * rng.choice((0.9, 1.1)) + 1, 2)}
        text = f'<tool_call>{json.dumps({"name": last.name, "arguments": args})}</tool_call>'
        return calls[:-1] + [text, answer]
    return turns


def make_episodes(env_id: str, n: int, seed: int) -> tuple[list[Episode], dict[str, str]]:
    """Episodes of ``n`` tasks, one variant each; returns them and the variant of each id."""
    tasks = sample_tasks(env_id, n=n, seed=seed)
    rng = random.Random(seed)
    variant = {t.id: rng.choice(VARIANTS) for t in tasks}
    scripted = [t for t in tasks if variant[t.id] != "chaos"]
    scripts = {t.id: degraded_script(t, variant[t.id], rng) for t in scripted}
    episodes = run_episodes(env_id, ScriptedPolicy(scripts), tasks=scripted, seed=seed)
    chaos = [t for t in tasks if variant[t.id] == "chaos"]
    if chaos:
        episodes += run_episodes(env_id, ChaosPolicy(), tasks=chaos, seed=seed + 1)
    return episodes, {e.id: variant[e.task.id] for e in episodes}


# ---------------------------------------------------------------------------- the fake judge


class HeuristicJudge:
    """FAKE judge policy: grades from the judge prompt with fixed rules plus seeded noise.

    Args:
        noise: Chance of a uniformly random score per criterion.
        garbage: Chance of an unparseable reply (tests the retry and unscorable paths).
    """

    def __init__(self, noise: float = 0.12, garbage: float = 0.04):
        self.noise = noise
        self.garbage = garbage

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        return [PolicyTurn(text=self.reply(r.messages[-1].content, r.seed)) for r in requests]

    def reply(self, prompt: str, seed: int) -> str:
        rng = random.Random(hashlib.sha256(f"{seed}:{prompt}".encode()).hexdigest())
        if rng.random() < self.garbage:
            return "The assistant did a reasonable job overall."
        facts = _read(prompt)
        items = []
        for cid in re.findall(r"^- id: (\S+)$", prompt, flags=re.MULTILINE):
            score = rng.randint(1, 5) if rng.random() < self.noise else _grade(cid, facts)
            items.append({"id": cid, "score": score, "rationale": "heuristic"})
        return json.dumps({"criteria": items})


def _read(prompt: str) -> dict[str, Any]:
    transcript = prompt.split("<transcript>", 1)[-1].split("</transcript>", 1)[0]
    reference = re.search(r"A reference answer \(for comparison only\): (.*)", prompt)
    final = transcript.rsplit("[assistant]", 1)[-1].split("[end:", 1)[0]
    ref_numbers = numbers_in(reference.group(1)) if reference else []
    found = numbers_in(final)
    matched = sum(any(abs(x - r) < 1e-3 for x in found) for r in ref_numbers)
    tool_lines = re.findall(r"^\[tool [^\]]*\]", transcript, flags=re.MULTILINE)
    return {
        "answer_match": matched / len(ref_numbers) if ref_numbers else 0.5,
        "calls": len(tool_lines),
        "errors": sum("error=" in line for line in tool_lines),
        "last_ok": bool(tool_lines) and "error=" not in tool_lines[-1],
        "short": len(final) < 240,
    }


def _grade(criterion: str, f: dict[str, Any]) -> int:
    clean = f["last_ok"] and f["errors"] == 0
    if criterion == "judge_correct":
        return 1 + round(4 * (0.6 * f["answer_match"] + 0.4 * clean))
    return 1 + round(4 * (0.7 * f["answer_match"] + 0.3 * f["short"]))  # tone / clarity criteria


# ---------------------------------------------------------------------------- scoring


def judge_rubric(env_id: str) -> Rubric:
    rubric = rubric_for(env_id)
    extra = Rubric.model_validate({"name": "x", "criteria": [JUDGE_CRITERION]}).criteria
    return rubric.model_copy(update={"criteria": rubric.criteria + extra})


def by_variant(scores: Sequence[Any], variant: dict[str, str]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(VARIANTS):
        group = [s for s in scores if variant[s.episode_id] == name]
        state = [s.criterion("state").value for s in group if s.criteria]
        judge = [c.value for s in group for c in s.criteria if c.id == "judge_correct" and c.value is not None]
        totals = [s.total for s in group if s.total is not None]
        out[name] = {
            "episodes": len(group),
            "state_success": sum(v == 1.0 for v in state) / len(state) if state else None,
            "judge_correct_mean": sum(judge) / len(judge) if judge else None,
            "total_mean": sum(totals) / len(totals) if totals else None,
        }
    return out


def tiny_llm_run(env_id: str, episodes: Sequence[Episode]) -> dict[str, Any]:
    """A random tiny local model as the judge: every judgement must be unscorable and counted."""
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model  # a benchmark may build models; the library may not

    policy = HFPolicy.from_pretrained(cached_tiny_model("kimi"))
    judge = LLMJudge(policy, retries=1, sampling=SamplingParams(max_new_tokens=48), max_transcript_chars=800, show_reference=True)
    started = time.perf_counter()
    scores = score_episodes_sync(episodes, judge_rubric(env_id), critics=[judge])
    metrics = score_metrics(scores)
    return {
        "episodes": len(scores),
        "wall_s": round(time.perf_counter() - started, 2),
        "unscorable_frac": metrics.get("score/unscorable_frac"),
        "unscorable_by_kind": {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith("score/unscorable/")},
        "judge_calls": metrics.get("score/component/critic:judge/calls"),
        "judge_tokens": metrics.get("score/component/critic:judge/tokens"),
    }


def run_domain(env_id: str, n: int, seed: int, tiny_llm: int, console: Console) -> dict[str, Any]:
    episodes, variant = make_episodes(env_id, n, seed)
    judge = LLMJudge(HeuristicJudge(), name="judge", retries=1, show_reference=True, budget=JudgeBudget(max_concurrency=32))
    started = time.perf_counter()
    scores = score_episodes_sync(episodes, judge_rubric(env_id), critics=[judge], skip_missing_critics=False)
    wall = time.perf_counter() - started
    critic = calibrate(scores, outcome="state")
    # Family-specific criteria are missing for most episodes; the fit needs criteria every episode has.
    shared = [c.id for c in judge_rubric(env_id).criteria if c.id != "state" and c.families is None]
    everything = calibrate(scores, outcome="state", criteria=shared)
    render_calibration(critic, console, title=f"{env_id}: FAKE heuristic judge vs verifiable state")
    render_calibration(everything, console, title=f"{env_id}: every criterion vs verifiable state")
    metrics = score_metrics(scores)
    result = {
        "episodes": len(episodes),
        "score_wall_s": round(wall, 2),
        "unscorable_frac": metrics.get("score/unscorable_frac"),
        "unscorable_by_kind": {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith("score/unscorable/")},
        "judge_calls": metrics.get("score/component/critic:judge/calls"),
        "by_variant": by_variant(scores, variant),
        "critic_calibration": critic.model_dump(mode="json"),
        "all_criteria_calibration": everything.model_dump(mode="json"),
        "roc": roc_points(scores),
    }
    if tiny_llm:
        result["tiny_llm_judge"] = tiny_llm_run(env_id, episodes[:tiny_llm])
    return result


def roc_points(scores: Sequence[Any]) -> dict[str, list[list[float]]]:
    """ROC curves (false-positive rate, true-positive rate) of the judge and a few checks."""
    curves = {}
    for cid in ("judge_correct", "answer", "outputs", "gold_calls"):
        pairs = [(s.criterion("state").value == 1.0, c.value) for s in scores if s.criteria for c in s.criteria if c.id == cid and c.value is not None]
        if not pairs or roc_auc([p[0] for p in pairs], [p[1] for p in pairs]) is None:
            continue
        pos = sum(p[0] for p in pairs)
        neg = len(pairs) - pos
        points = [[0.0, 0.0]]
        for t in sorted({p[1] for p in pairs}, reverse=True):
            tp = sum(1 for y, v in pairs if y and v >= t)
            fp = sum(1 for y, v in pairs if not y and v >= t)
            points.append([fp / neg, tp / pos])
        curves[cid] = points
    return curves


# ---------------------------------------------------------------------------- output


def print_variants(env_id: str, result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{env_id}: by policy variant")
    for name in ("variant", "episodes", "state success", "judge_correct mean (FAKE judge)", "rubric total mean"):
        table.add_column(name)
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for name, row in result["by_variant"].items():
        table.add_row(name, str(row["episodes"]), fmt(row["state_success"]), fmt(row["judge_correct_mean"]), fmt(row["total_mean"]))
    console.print(table)
    console.print(
        f"unscorable episodes {result['unscorable_frac']:.1%}; unscorable criterion results by kind {result['unscorable_by_kind']}; "
        f"judge calls {result['judge_calls']:.0f}; scoring took {result['score_wall_s']} s"
    )
    if "tiny_llm_judge" in result:
        t = result["tiny_llm_judge"]
        console.print(
            f"tiny random LLM judge on {t['episodes']} episodes: unscorable episodes {t['unscorable_frac']:.0%}, "
            f"criterion results by kind {t['unscorable_by_kind']} ({t['wall_s']} s)"
        )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for ax, (env_id, result) in zip(axes[0], results.items(), strict=True):
        aucs = {a["criterion"]: a["auc"] for a in result["all_criteria_calibration"]["agreement"]}
        for cid, points in result["roc"].items():
            xs, ys = zip(*points, strict=True)
            label = f"{cid} (AUC {aucs.get(cid, float('nan')):.2f})" + (" FAKE judge" if cid == "judge_correct" else "")
            ax.plot(xs, ys, marker=".", label=label)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{env_id}: predicting final_state_matches_gold", fontsize=10)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _has_transformers() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", nargs="+", default=["toolgym/unitconv-v0", "toolgym/retail-v0"], help="Registered env ids.")
    parser.add_argument("--tasks", type=int, default=280, help="Tasks (episodes) per domain.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny-llm", type=int, default=16 if _has_transformers() else 0, help="Episodes judged by a random tiny local model (0: off).")
    parser.add_argument("--no-tiny-llm", dest="tiny_llm", action="store_const", const=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "calibration.json")
    parser.add_argument("--plot", type=Path, default=HERE / "results" / "calibration.png")
    args = parser.parse_args(argv)
    console = Console(width=140)
    results = {}
    for env_id in args.domains:
        console.rule(f"[bold]{env_id}")
        results[env_id] = run_domain(env_id, args.tasks, args.seed, args.tiny_llm, console)
        print_variants(env_id, results[env_id], console)
    report = {
        "command": "python benchmarks/calibration.py " + " ".join(argv or []),
        "config": {"domains": args.domains, "tasks": args.tasks, "seed": args.seed, "tiny_llm": args.tiny_llm, "variants": VARIANTS},
        "judge": "HeuristicJudge: a FAKE, rule-based, noisy judge policy run through LLMJudge (not a model)",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(results, args.plot)
    console.print(f"wrote {args.out} and {args.plot}")
    return report


if __name__ == "__main__":
    main()
