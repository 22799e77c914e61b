"""The ``toolgym`` command: list environments, run rollouts, run the demo.

    toolgym envs
    toolgym rollout toolgym/unitconv-v0 --policy scripted --episodes 1000 --out runs/gold.jsonl
    toolgym demo
    toolgym score runs/gold.jsonl --rubric unitconv
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

import toolgym
from toolgym import metrics
from toolgym.errors import ToolgymError


class _Commands(TyperGroup):
    """Every command's user errors (``ToolgymError``) print ``error: ...`` and exit 2, never a traceback."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]  # typer's stub narrows the Context type
        try:
            return super().invoke(ctx)
        except ToolgymError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None


app = typer.Typer(help="toolgym: tool-use RL environments for language-model agents.", no_args_is_help=True, cls=_Commands)
console = Console()


@app.callback()
def _setup() -> None:
    # Piped output (make demo | tee, CI logs) gets a wide console instead of rich's 80 columns.
    console.width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120  # type: ignore[assignment]  # rich accepts None (auto width); its stub says int


class PolicyKind(str, Enum):
    scripted = "scripted"
    chaos = "chaos"
    hf = "hf"
    openai = "openai"


@app.command("envs")
def envs_command() -> None:
    """List the registered environments."""
    table = Table(title="registered environments")
    table.add_column("id", style="bold")
    table.add_column("entry point")
    table.add_column("description")
    from toolgym.envs.registry import description, load_entry_points

    load_entry_points()
    for env_id, spec in sorted(toolgym.envs.registered().items()):
        entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__qualname__", "?")
        table.add_row(env_id, entry, description(env_id))
    console.print(table)


@dataclass
class RunResult:
    """What one ``rollout`` produced."""

    env_id: str
    policy: str
    episodes: list
    summary: dict[str, float]
    scores: dict[str, float] | None = None


def rollout(
    env_id: str,
    policy: PolicyKind = PolicyKind.scripted,
    episodes: int = 100,
    *,
    concurrency: int = 256,
    seed: int = 0,
    tool_format: str = "hermes",
    group_size: int = 1,
    model: str | None = None,
    base_url: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    score: bool = False,
    rubric: str | None = None,
    out: Path | None = None,
    show_table: bool = True,
    pool: str = "local",
    actors: int = 2,
    ray_address: str | None = None,
) -> RunResult:
    """Run episodes with a progress bar, optionally score and save them; print a summary table."""
    from toolgym.policies.named import PolicyOptions, make_policy
    from toolgym.rollouts import SamplingParams, run_episodes, sample_tasks, save_episodes
    from toolgym.rollouts.pool import make_pool

    if tool_format == "auto":
        tool_format = _auto_format(policy, model)
    factory = lambda: toolgym.make(env_id, tool_format=tool_format)  # noqa: E731
    factory.__name__ = env_id
    tasks = sample_tasks(factory, episodes, seed)
    model_dir = _tiny_model_dir(model) if policy is PolicyKind.hf and model in TINY_MODELS else model
    if policy is PolicyKind.hf and model_dir:  # refuse a template whose prompts would differ from deployment, before any work
        from toolgym.policies.template_cli import preflight_template_dir

        preflight_template_dir(model_dir, tool_format=tool_format)
    agent = make_policy(policy.value, PolicyOptions(tasks=tasks, tool_format=tool_format, model=model_dir, base_url=base_url))
    policy_name = model if policy is PolicyKind.hf and model else policy.value
    label = f"{policy_name} on {env_id}"
    env_pool = make_pool(pool, actors=actors, ray_address=ray_address)  # Ray pools start (and are checked) at bind
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        job = bar.add_task("episodes", total=len(tasks) * group_size)
        started = time.perf_counter()
        eps = run_episodes(
            factory, agent, tasks=tasks, seed=seed, concurrency=concurrency, group_size=group_size,
            sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature),
            on_episode=lambda _: bar.advance(job), pool=env_pool,
        )
        wall = time.perf_counter() - started
    result = RunResult(env_id, policy_name, eps, metrics.summarize(eps, wall))
    if out is not None:  # saved before scoring, so a scoring error loses no episode
        save_episodes(eps, out)
        console.print(f"saved {len(eps)} episodes to [bold]{out}[/]")
    if score or rubric is not None:
        result.scores = _verifiable_scores(env_id, eps, rubric)
    if show_table:
        _print_summary({**result.summary, **(result.scores or {})}, label)
    return result


TINY_MODELS = ("tiny-kimi", "tiny-qwen3")
"""``--model`` values that build (once, then cache) a tiny random MoE instead of loading a folder."""


def _auto_format(policy: PolicyKind, model: str | None) -> str:
    """``--format auto``: the tool-call format the local model's chat template teaches."""
    from toolgym.envs.formats import chat_template_of, detect_format
    from toolgym.errors import ConfigError

    if policy is not PolicyKind.hf or not model:
        raise ConfigError("--format auto reads a local model's chat template: use it with --policy hf --model DIR, "
                          "or name the format (--format hermes, kimi_k2, deepseek, llama3_json, glm45, qwen3_coder, harmony, mistral, openai)")
    return detect_format(chat_template_of(_tiny_model_dir(model) if model in TINY_MODELS else model))


def _tiny_model_dir(name: str) -> str:
    from toolgym.policies.models.build import cached_tiny_model

    return str(cached_tiny_model(name.removeprefix("tiny-")))  # type: ignore[arg-type]  # validated against TINY_MODELS by the caller


def _verifiable_scores(env_id: str, episodes: list, rubric: str | None = None) -> dict[str, float]:
    """Score episodes with the verifiable part of ``rubric`` (default: the env's catalog rubric)."""
    from toolgym.rubrics import rubric_for, score_episodes_sync, score_metrics
    from toolgym.rubrics.metrics import SCORE_MEAN, SCORE_UNSCORABLE_FRAC
    from toolgym.rubrics.report import resolve_rubric

    chosen = resolve_rubric(rubric) if rubric is not None else rubric_for(env_id)
    all_metrics = score_metrics(score_episodes_sync(episodes, chosen.verifiable()))
    return {k: all_metrics[k] for k in (SCORE_MEAN, SCORE_UNSCORABLE_FRAC) if k in all_metrics}


def _print_summary(summary: dict[str, float], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}")
    console.print(table)


@app.command("rollout")
def rollout_command(
    env_id: str = typer.Argument(..., help="Registered environment id, e.g. toolgym/unitconv-v0."),
    policy: PolicyKind = typer.Option(
        PolicyKind.scripted, help="scripted: gold replays; chaos: malformed calls; hf: a local model; openai: an endpoint."
    ),
    episodes: int = typer.Option(100, min=1, help="Number of tasks (episodes per task: --group-size)."),
    concurrency: int = typer.Option(256, min=1, help="Episodes alive at once."),
    seed: int = typer.Option(0, min=0, help="Base seed: task i is sampled with seed + i."),
    tool_format: str = typer.Option("hermes", "--format", help="Tool-call format: hermes, openai, kimi_k2, deepseek, llama3_json, glm45, qwen3_coder, harmony, mistral, "
                                     "or auto (from --model's chat template)."),
    group_size: int = typer.Option(1, min=1, help="Episodes per task (GRPO siblings)."),
    model: str | None = typer.Option(None, help="hf: a local model folder, tiny-kimi or tiny-qwen3; openai: the model name."),
    base_url: str | None = typer.Option(None, help="openai: endpoint such as http://127.0.0.1:8000/v1."),
    max_new_tokens: int = typer.Option(256, min=1, help="Token budget per assistant turn (model policies)."),
    temperature: float = typer.Option(1.0, min=0.0, help="Sampling temperature (model policies)."),
    score: bool = typer.Option(False, help="Also score the episodes with the env's verifiable rubric."),
    rubric: str | None = typer.Option(None, help="Score with this rubric (a .yaml/.json file, catalog name or env id); implies --score."),
    out: Path | None = typer.Option(None, help="Save episodes to this .jsonl or .parquet file (written before scoring)."),
    imports: list[str] = typer.Option([], "--import", help="Import this module first (it registers your envs); repeatable."),
    pool: str = typer.Option("local", help="Where the envs live: local (this process) or ray (env actors)."),
    actors: int = typer.Option(2, min=1, help="--pool ray: env actors to start (1 CPU each)."),
    ray_address: str | None = typer.Option(None, help="--pool ray: join this Ray cluster (host:port or auto) instead of starting one."),
) -> None:
    """Run episodes of ENV_ID and print a summary (episodes/s, stop reasons, error counts).

    ENV_ID is a registered id, or 'package.module:ClassName' for an environment class of your own.
    """
    from toolgym.envs.registry import import_env

    for module in imports:
        import_env(module)
    if ":" in env_id and "/" not in env_id.partition(":")[0]:
        env_id = import_env(env_id)
    rollout(
        env_id, policy, episodes, concurrency=concurrency, seed=seed, tool_format=tool_format, group_size=group_size,
        model=model, base_url=base_url, max_new_tokens=max_new_tokens, temperature=temperature, score=score,
        rubric=rubric, out=out, pool=pool, actors=actors, ray_address=ray_address,
    )


@app.command("demo")
def demo_command(
    episodes: int = typer.Option(300, min=1, help="--quick: tasks per run (the model run uses at most 16)."),
    quick: bool = typer.Option(False, "--quick", help="Only the table of gold replays, a chaos policy and a random tiny model on every env."),
    seed: int = typer.Option(0, help="Seed of SFT order, RL tasks and sampling (held-out tasks stay fixed)."),
    out: Path | None = typer.Option(None, help="Also write the results (recipe or --quick table) as JSON to this file."),
    threads: int = typer.Option(2, min=1, help="Torch threads of the recipe (float sums, and so the run, differ by thread count)."),
    plot: Path = typer.Option(Path("runs/demo/demo.png"), help="Where the recipe draws its PNG (training reward, success per stage)."),
) -> None:
    """The main job: SFT then GRPO of the shipped tiny MoE base on UnitConv tasks, held-out
    success printed before SFT, after SFT and after RL (toolgym.trainers.demo). With --quick:
    gold replays on every shipped environment, a deliberately bad policy and a tiny random MoE
    model acting through the same loop, scored with the environments' verifiable rubrics."""
    if not quick:
        from toolgym.trainers.demo import main as recipe

        recipe(seed=seed, out=out, console=console, threads=threads, plot=plot)
        return
    console.rule("[bold]toolgym demo --quick")
    envs_command()
    shipped = sorted(e for e in toolgym.envs.registered() if e.startswith("toolgym/"))
    runs = [rollout(e, PolicyKind.scripted, episodes, score=True, show_table=False) for e in shipped]
    runs.append(rollout("toolgym/unitconv-v0", PolicyKind.chaos, episodes, seed=10_000, score=True, show_table=False))
    runs.append(
        rollout("toolgym/unitconv-v0", PolicyKind.hf, min(episodes, 16), model="tiny-kimi", max_new_tokens=48, score=True, show_table=False)
    )
    _print_runs(runs)
    if out is not None:
        import json

        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"env_id": r.env_id, "policy": r.policy, "has_expected_state": _has_expected(r), "summary": r.summary, "scores": r.scores}
            for r in runs
        ]
        out.write_text(json.dumps(rows, indent=1))


def _has_expected(run: RunResult) -> bool:
    """Whether the run's tasks state an expected final digest (shell tasks are checked by files instead)."""
    return any(e.task.expected.state_digest is not None for e in run.episodes)


def _print_runs(runs: list[RunResult]) -> None:
    from toolgym.rubrics.metrics import SCORE_MEAN, SCORE_UNSCORABLE_FRAC

    table = Table(title="demo summary (scores: verifiable rubric of each env)")
    for col in ("env", "policy", "episodes", "eps/s", "expected", "bad calls", "score", "unscorable"):
        table.add_column(col, justify="left" if col in ("env", "policy") else "right", no_wrap=True)
    for r in runs:
        s, sc = r.summary, r.scores or {}
        bad = int(sum(v for k, v in s.items() if k.startswith(metrics.ERROR_PREFIX)))
        table.add_row(
            r.env_id.removeprefix("toolgym/"), r.policy, f"{int(s[metrics.EPISODES])}", f"{s.get(metrics.EPISODES_PER_S, 0):,.0f}",
            f"{s.get(metrics.EXPECTED_STATE_RATE, 0):.1%}" if _has_expected(r) else "n/a", f"{bad}", f"{sc.get(SCORE_MEAN, float('nan')):.3f}",
            f"{sc.get(SCORE_UNSCORABLE_FRAC, 0):.0%}",
        )
    console.print(table)


@app.command("serve")
def serve_command(
    model_dir: Path = typer.Argument(..., help="Local Hugging Face model folder (config, weights, tokenizer with a chat template)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    max_batch: int = typer.Option(32, min=1, help="Most requests decoded together in one batch."),
    max_tokens_limit: int | None = typer.Option(
        None, min=1, help="Largest max_tokens a request may ask for; more gets a 400 naming the limit (default: the model's context)."
    ),
) -> None:
    """Serve a local model over an OpenAI-compatible HTTP API, batching concurrent requests continuously."""
    from toolgym.policies.serve import serve

    try:
        serve(model_dir, host=host, port=port, max_batch=max_batch, max_tokens_limit=max_tokens_limit)
    except ToolgymError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command("check-template")
def check_template_command(
    model_dir: Path = typer.Argument(..., help="Local Hugging Face model folder (its tokenizer and chat template; no weights are loaded)."),
    tool_format: str = typer.Option("auto", "--format", help="The env's tool-call format, or auto (detected from the template)."),
    template_kwargs: str | None = typer.Option(None, help='Chat-template arguments as JSON, e.g. \'{"enable_thinking": false}\'.'),
    history_rewrite: str = typer.Option("new_row", help="new_row (a row starts where the template rewrites history) or keep_row."),
) -> None:
    """Check, turn by turn, that toolgym's prompts equal MODEL_DIR's deployment rendering and its calls parse."""
    from toolgym.policies.template_cli import check_template_command as run_check

    if not run_check(str(model_dir), tool_format=tool_format, template_kwargs=template_kwargs,
                     history_rewrite=history_rewrite,  # type: ignore[arg-type]  # validated by ChatRenderer
                     print_line=lambda line: console.print(line, markup=False, highlight=False)):
        raise typer.Exit(1)


@app.command("score")
def score_command(
    file: Path = typer.Argument(..., help="Episode file written by `toolgym rollout --out` (.jsonl or .parquet)."),
    rubric: str | None = typer.Option(None, help="Rubric: a .yaml/.json file, a catalog name or an env id (default: each episode's env rubric)."),
    judge_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint of an LLM judge for critic criteria named 'judge'."),
    judge_model: str = typer.Option("", help="Model name sent to the judge endpoint."),
    judge_max_tokens: int = typer.Option(512, min=1, help="Most tokens one judgement may take."),
    per_episode: bool = typer.Option(False, help="Also print one row per episode."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report (every score and its breakdown) as JSON."),
) -> None:
    """Re-score a trajectory file with a rubric and print the per-criterion breakdown."""
    from toolgym.rubrics.report import render_report, score_file

    critics = None
    if judge_url is not None:
        from toolgym.policies.openai_policy import OpenAIPolicy
        from toolgym.policy import SamplingParams
        from toolgym.rubrics.critics import LLMJudge

        endpoint = OpenAIPolicy(judge_url, judge_model, token_ids=False, logprobs=False)
        critics = [LLMJudge(endpoint, name="judge", sampling=SamplingParams(max_new_tokens=judge_max_tokens, temperature=0.0))]
    try:
        report = score_file(file, rubric, critics=critics)
    except ToolgymError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    render_report(report, console, per_episode=per_episode)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.model_dump_json(indent=1))
        console.print(f"wrote the report to [bold]{json_out}[/]")


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="A YAML TrainConfig (see examples/configs/grpo_tiny.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in run.out_dir from its latest checkpoint."),
    iterations: int | None = typer.Option(None, min=1, help="Override run.iterations."),
    out: Path | None = typer.Option(None, help="Override run.out_dir."),
    ray_address: str | None = typer.Option(None, help="Override system.address: join this Ray cluster (host:port or auto)."),
    imports: list[str] = typer.Option([], "--import", help="Import this module first (it registers your envs, e.g. toolgym.envs.synth.registered); repeatable."),
) -> None:
    """Train a policy with GRPO, PPO or the K2 loss; a progress bar and a summary line per iteration."""
    from toolgym.envs.registry import import_env
    from toolgym.trainers.cli_train import train_cli

    for module in imports:
        import_env(module)
    train_cli(config, resume=resume, iterations=iterations, out=out, console=console, ray_address=ray_address)


@app.command("synth")
def synth_command(
    config: Path = typer.Argument(..., help="A YAML SynthConfig (see examples/configs/synth_small.yaml)."),
    out: Path | None = typer.Option(None, help="Override the config's output folder."),
    name: str | None = typer.Option(None, help="Override the run name (it names the registered envs)."),
) -> None:
    """Synthesize tools, agents, tasks and judged trajectories; export a dataset and RL envs (resumable)."""
    from toolgym.synth_cli import synth_cli

    synth_cli(config, out=out, name=name, console=console)


@app.command("view")
def view_command(
    file: Path = typer.Argument(..., help="Episode file written by `toolgym rollout --out` (.jsonl or .parquet)."),
    env: str | None = typer.Option(None, help="Only episodes whose env id contains this."),
    stop_reason: str | None = typer.Option(None, help="Only this stop reason (answered, max_turns, env_error, ...)."),
    failed: bool | None = typer.Option(None, "--failed/--scorable", help="Only infrastructure failures / only scorable episodes."),
    errors: bool | None = typer.Option(None, "--errors/--no-errors", help="Only episodes with / without error observations."),
    min_reward: float | None = typer.Option(None, help="Only episodes with reward (or score, with --score) at least this."),
    max_reward: float | None = typer.Option(None, help="Only episodes with reward (or score, with --score) at most this."),
    score: bool = typer.Option(False, help="Score with each env's rubric and show the per-criterion breakdown."),
    rubric: str | None = typer.Option(None, help="Score with this rubric instead (file, catalog name or env id)."),
    page: int = typer.Option(1, min=1, help="Page to show."),
    page_size: int = typer.Option(5, min=1, help="Episodes per page."),
) -> None:
    """Show stored episodes: messages, tool calls with arguments, errors, faults, rewards and scores."""
    from toolgym.rollouts.storage import load_episodes
    from toolgym.rollouts.view import EpisodeFilter, select, show

    episodes = load_episodes(file)
    scores = None
    if score or rubric is not None:
        from toolgym.rubrics.report import score_file

        scores = score_file(file, rubric).scores
    rewards = [(s.total if s.total is not None else float("nan")) for s in scores] if scores else [e.reward for e in episodes]
    flt = EpisodeFilter(env=env, stop_reason=stop_reason, failed=failed, min_reward=min_reward, max_reward=max_reward, errors=errors)
    show(console, episodes, select(episodes, rewards, flt, page, page_size), flt, scores)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
