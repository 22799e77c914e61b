"""The ``toolgym`` command: list environments, run rollouts, run the demo.

    toolgym envs
    toolgym rollout toolgym/unitconv-v0 --policy scripted --episodes 1000 --out runs/gold.jsonl
    toolgym demo
    toolgym score runs/gold.jsonl --rubric unitconv
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import toolgym
from toolgym import metrics
from toolgym.errors import ToolgymError

app = typer.Typer(help="toolgym: tool-use RL environments for language-model agents.", no_args_is_help=True)
console = Console()


class PolicyKind(str, Enum):
    scripted = "scripted"
    chaos = "chaos"


@app.command("envs")
def envs_command() -> None:
    """List the registered environments."""
    table = Table(title="registered environments")
    table.add_column("id", style="bold")
    table.add_column("entry point")
    table.add_column("description")
    for env_id, spec in sorted(toolgym.envs.registered().items()):
        entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__qualname__", "?")
        table.add_row(env_id, entry, spec.description)
    console.print(table)


def _policy(kind: PolicyKind, tasks: list, tool_format: str):  # type: ignore[no-untyped-def]
    from toolgym.rollouts import ChaosPolicy, ScriptedPolicy

    if kind is PolicyKind.scripted:
        return ScriptedPolicy.gold(tasks, tool_format)
    return ChaosPolicy(tool_format)


def rollout(
    env_id: str,
    policy: PolicyKind = PolicyKind.scripted,
    episodes: int = 100,
    concurrency: int = 256,
    seed: int = 0,
    tool_format: str = "hermes",
    out: Path | None = None,
    title: str | None = None,
) -> dict[str, float]:
    """Run episodes with a progress bar, print a summary table, optionally save; returns metrics."""
    from toolgym.rollouts import run_episodes, sample_tasks, save_episodes

    factory = lambda: toolgym.make(env_id, tool_format=tool_format)  # noqa: E731
    factory.__name__ = env_id  # type: ignore[attr-defined]
    tasks = sample_tasks(factory, episodes, seed)
    with Progress(
        TextColumn(f"[bold]{policy.value}[/] {env_id}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as bar:
        job = bar.add_task("episodes", total=len(tasks))
        started = time.perf_counter()
        eps = run_episodes(
            factory, _policy(policy, tasks, tool_format), tasks=tasks, seed=seed, concurrency=concurrency,
            on_episode=lambda _: bar.advance(job),
        )
        wall = time.perf_counter() - started
    summary = metrics.summarize(eps, wall)
    _print_summary(summary, title or f"{policy.value} policy on {env_id}")
    if out is not None:
        save_episodes(eps, out)
        console.print(f"saved {len(eps)} episodes to [bold]{out}[/]")
    return summary


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
    policy: PolicyKind = typer.Option(PolicyKind.scripted, help="scripted: replay gold solutions; chaos: malformed calls."),
    episodes: int = typer.Option(100, min=1, help="Number of episodes (one task each)."),
    concurrency: int = typer.Option(256, min=1, help="Episodes alive at once."),
    seed: int = typer.Option(0, help="Base seed: task i is sampled with seed + i."),
    tool_format: str = typer.Option("hermes", "--format", help="Tool-call format: hermes, openai, kimi_k2."),
    out: Optional[Path] = typer.Option(None, help="Save episodes to this .jsonl or .parquet file."),
) -> None:
    """Run episodes of ENV_ID and print a summary (episodes/s, stop reasons, error counts)."""
    try:
        rollout(env_id, policy, episodes, concurrency, seed, tool_format, out)
    except ToolgymError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command("demo")
def demo_command(episodes: int = typer.Option(500, min=1, help="Episodes per policy.")) -> None:
    """The main job on embedded defaults: gold replays, then a deliberately bad policy."""
    env_id = "toolgym/unitconv-v0"
    console.rule("[bold]toolgym demo")
    envs_command()
    gold = rollout(env_id, PolicyKind.scripted, episodes, title=f"gold replays on {env_id}")
    chaos = rollout(env_id, PolicyKind.chaos, episodes, seed=10_000, title=f"chaos policy on {env_id} (every bad call is data)")
    reached = gold.get(metrics.EXPECTED_STATE_RATE, 0.0)
    console.print(
        f"gold replays reached the expected state in {reached:.1%} of {episodes} episodes; "
        f"the chaos policy made {int(sum(v for k, v in chaos.items() if k.startswith(metrics.ERROR_PREFIX)))} bad calls, "
        f"all answered as error observations, with {chaos.get(metrics.FAILURE_FRAC, 0.0):.0%} episodes lost."
    )


@app.command("serve")
def serve_command(
    model_dir: Path = typer.Argument(..., help="Local Hugging Face model folder (config, weights, tokenizer with a chat template)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    max_batch: int = typer.Option(32, min=1, help="Most requests decoded together in one batch."),
) -> None:
    """Serve a local model over an OpenAI-compatible HTTP API, batching concurrent requests."""
    from toolgym.rollouts.serve import serve

    try:
        serve(model_dir, host=host, port=port, max_batch=max_batch)
    except ToolgymError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command("score")
def score_command(
    file: Path = typer.Argument(..., help="Episode file written by `toolgym rollout --out` (.jsonl or .parquet)."),
    rubric: Optional[str] = typer.Option(None, help="Rubric: a .yaml/.json file, a catalog name or an env id (default: each episode's env rubric)."),
    judge_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint of an LLM judge for critic criteria named 'judge'."),
    judge_model: str = typer.Option("", help="Model name sent to the judge endpoint."),
    judge_max_tokens: int = typer.Option(512, min=1, help="Most tokens one judgement may take."),
    per_episode: bool = typer.Option(False, help="Also print one row per episode."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report (every score and its breakdown) as JSON."),
) -> None:
    """Re-score a trajectory file with a rubric and print the per-criterion breakdown."""
    from toolgym.rubrics.report import render_report, score_file

    critics = None
    if judge_url is not None:
        from toolgym.rollouts.openai_policy import OpenAIPolicy
        from toolgym.rollouts.policy import SamplingParams
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
