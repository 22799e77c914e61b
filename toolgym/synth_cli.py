"""``toolgym synth CONFIG``: run the data engine with progress bars, then print its report.

    toolgym synth examples/configs/synth_small.yaml
    toolgym synth examples/configs/synth_small.yaml --out runs/other   # another output folder

Killed and started again with the same config and folder, it resumes from the stage caches
and ends with the same output.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from toolgym.rubrics.synth.config import load_config
from toolgym.rubrics.synth.pipeline import SynthRun, run_synth
from toolgym.rubrics.synth.report import SynthReport


def synth_cli(config: Path, *, out: Path | None = None, name: str | None = None, console: Console | None = None) -> SynthRun:
    """Load ``config``, run it with a progress bar per stage, print the report."""
    console = console or Console()
    cfg = load_config(config, out=str(out) if out is not None else None, name=name)
    bars: dict[str, TaskID] = {}
    with Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:

        def advance(stage: str, done: int, total: int | None) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total if total is not None else progress.tasks[bars[stage]].total)

        run = run_synth(cfg, advance=advance)
    print_report(run.report, console)
    console.print(f"wrote [bold]{run.out}[/]: dataset/ (datasets.load_from_disk), tools/agents/tasks.jsonl, manifest.json, report.json")
    console.print(f"{len(run.env_ids)} envs: TOOLGYM_SYNTH_RUNS={run.out} toolgym rollout {run.env_ids[0] if run.env_ids else 'ID'} "
                  "--import toolgym.envs.synth.registered")
    return run


def print_report(report: SynthReport, console: Console) -> None:
    """The report as tables: stages (time, tokens, cache), counts, dropped items, diversity, agreement."""
    stages = Table(title=f"synth run {report.name!r} (seed {report.seed})")
    for col in ("stage", "kept", "seconds", "tokens", "cache hits"):
        stages.add_column(col, justify="right" if col != "stage" else "left")
    for s in report.stages:
        stages.add_row(s.name, str(s.items), f"{s.seconds:.1f}", str(s.tokens), str(s.cache_hits))
    console.print(stages)
    counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items())
    rate = f"{report.pass_rate:.1%}" if report.pass_rate is not None else "n/a"
    console.print(f"counts: {counts}; judge pass rate {rate}")
    if report.dropped:
        table = Table(title="dropped items")
        for col in ("stage", "kind", "count", "example"):
            table.add_column(col)
        for d in report.dropped:
            table.add_row(d.stage, d.kind, str(d.count), (d.examples[0] if d.examples else "")[:100])
        console.print(table)
    div = report.diversity
    console.print(f"diversity: {div.distinct_tool_names:,} tool names, {div.schema_shapes:,} parameter shapes, "
                  f"{div.domains_covered}/{div.domains_total} domains, distinct-2 {div.distinct_2:.3f}, distinct-3 {div.distinct_3:.3f}; "
                  f"operators {div.operators}; difficulty {div.difficulty}")
    ag = report.agreement
    if ag.agreement is not None:
        console.print(f"judge agreement ({ag.judge}) on {ag.pairs:,} verifiable criteria: {ag.agreement:.1%}")
