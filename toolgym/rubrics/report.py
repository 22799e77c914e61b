"""Re-scoring a trajectory file and showing the breakdown: the body of ``toolgym score``.

    toolgym score runs/gold.jsonl --rubric unitconv
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from toolgym.rollouts.storage import load_episodes
from toolgym.rubrics.calibration import CalibrationReport
from toolgym.rubrics.catalog import catalog_rubric_by_name, rubric_for
from toolgym.rubrics.loading import load_rubric
from toolgym.rubrics.metrics import score_metrics
from toolgym.rubrics.rubric import Rubric
from toolgym.rubrics.score import Score
from toolgym.rubrics.scoring import Critics, score_episodes_sync


class CriterionSummary(BaseModel):
    """One criterion over all scored episodes."""

    model_config = ConfigDict(extra="forbid")

    rubric: str
    id: str
    kind: str
    source: str
    weight: float
    gate: float | None
    applicable: int
    skipped: int
    """Episodes where the criterion's critic was not given."""
    scored: int
    unscorable: int
    gate_failures: int
    mean: float | None


class ScoreReport(BaseModel):
    """Scores of a trajectory file with per-criterion and per-failure summaries."""

    model_config = ConfigDict(extra="forbid")

    path: str
    rubrics: list[str]
    scores: list[Score]
    metrics: dict[str, float]
    criteria: list[CriterionSummary]
    unscorable: dict[str, int]
    """Unscorable totals by kind."""


def resolve_rubric(spec: str | Path | Rubric) -> Rubric:
    """A rubric from an object, a ``.yaml``/``.json`` path, a catalog name or an environment id."""
    if isinstance(spec, Rubric):
        return spec
    text = str(spec)
    if Path(text).suffix in (".yaml", ".yml", ".json"):
        return load_rubric(text)
    if "/" in text:
        return rubric_for(text)
    return catalog_rubric_by_name(text)


def score_file(
    path: str | Path,
    rubric: str | Path | Rubric | None = None,
    *,
    critics: Critics = None,
    skip_missing_critics: bool = True,
) -> ScoreReport:
    """Load episodes written by ``save_episodes`` and score them.

    Args:
        path: A ``.jsonl`` or ``.parquet`` episode file.
        rubric: Rubric object, file, catalog name or env id; default: each episode's env rubric.
        critics: Critics for critic-sourced criteria.
        skip_missing_critics: Show criteria of absent critics as skipped instead of failing.
    """
    episodes = load_episodes(path)
    by_rubric: dict[str, tuple[Rubric, list[int]]] = {}
    for i, ep in enumerate(episodes):
        chosen = resolve_rubric(rubric) if rubric is not None else rubric_for(ep.env_id)
        by_rubric.setdefault(chosen.name, (chosen, []))[1].append(i)
    scores: list[Score | None] = [None] * len(episodes)
    for chosen, idx in by_rubric.values():
        batch = score_episodes_sync([episodes[i] for i in idx], chosen, critics=critics, skip_missing_critics=skip_missing_critics)
        for i, s in zip(idx, batch, strict=True):
            scores[i] = s
    done = [s for s in scores if s is not None]
    return ScoreReport(
        path=str(path),
        rubrics=sorted(by_rubric),
        scores=done,
        metrics=score_metrics(done),
        criteria=summarize_criteria(done, [r for r, _ in by_rubric.values()]),
        unscorable=dict(Counter(s.unscorable.kind for s in done if s.unscorable is not None)),
    )


def _empty_stats() -> dict[str, Any]:
    return {"applicable": 0, "skipped": 0, "scored": 0, "unscorable": 0, "gate_failures": 0, "sum": 0.0}


def summarize_criteria(scores: Sequence[Score], rubrics: Sequence[Rubric]) -> list[CriterionSummary]:
    """Per-criterion counts and means, in rubric order."""
    stats: dict[tuple[str, str], dict[str, Any]] = defaultdict(_empty_stats)
    for s in scores:
        for c in s.criteria:
            st = stats[(s.rubric, c.id)]
            st["applicable"] += c.applicable
            st["skipped"] += c.skipped
            st["unscorable"] += c.unscorable is not None
            if c.value is not None:
                st["scored"] += 1
                st["sum"] += c.value
                st["gate_failures"] += c.gate is not None and c.value < c.gate
    out = []
    for r in rubrics:
        for rc in r.criteria:
            st = stats.get((r.name, rc.id)) or _empty_stats()
            out.append(
                CriterionSummary(
                    rubric=r.name, id=rc.id, kind=rc.kind, source=rc.source.label, weight=rc.weight, gate=rc.gate,
                    applicable=st["applicable"], skipped=st["skipped"], scored=st["scored"], unscorable=st["unscorable"],
                    gate_failures=st["gate_failures"], mean=st["sum"] / st["scored"] if st["scored"] else None,
                )
            )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_report(report: ScoreReport, console: Any = None, per_episode: bool = False) -> None:
    """Print the breakdown tables of a ``ScoreReport`` with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = report.metrics
    console.print(
        f"[bold]{report.path}[/]: {len(report.scores)} episodes, rubric {', '.join(report.rubrics)}; "
        f"mean {_fmt(m.get('score/mean'))}, unscorable {m.get('score/unscorable_frac', 0.0):.1%}, gated {m.get('score/gated_frac', 0.0):.1%}"
    )
    table = Table(title="criteria")
    for name, justify in (("criterion", "left"), ("kind", "left"), ("source", "left"), ("weight", "right"), ("gate", "right"),
                          ("applies", "right"), ("skipped", "right"), ("scored", "right"), ("unscorable", "right"), ("gate fails", "right"), ("mean", "right")):
        table.add_column(name, justify=justify, no_wrap=name == "criterion")  # type: ignore[arg-type]  # justify is one of rich's literals
    for c in report.criteria:
        table.add_row(c.id, c.kind, c.source, f"{c.weight:g}", _fmt(c.gate, 2), str(c.applicable), str(c.skipped), str(c.scored),
                      f"[red]{c.unscorable}[/]" if c.unscorable else "0", str(c.gate_failures), _fmt(c.mean))
    console.print(table)
    if report.unscorable:
        console.print("unscorable episodes by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(report.unscorable.items())))
    if per_episode:
        _render_episodes(report.scores, console)


def _render_episodes(scores: Sequence[Score], console: Any) -> None:
    from rich.table import Table

    table = Table(title="episodes")
    for name in ("episode", "total", "weighted", "penalty", "gated by", "unscorable"):
        table.add_column(name)
    for s in scores:
        reason = f"{s.unscorable.kind}: {s.unscorable.message}" if s.unscorable else ""
        table.add_row(s.episode_id, _fmt(s.total), _fmt(s.weighted), _fmt(s.penalty), s.gated_by or "", reason[:80])
    console.print(table)


def render_calibration(report: CalibrationReport, console: Any = None, title: str = "calibration") -> None:
    """Print a ``CalibrationReport`` as tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{title}: agreement with {report.outcome!r} ({report.with_outcome} episodes, success rate {_fmt(report.success_rate)})")
    for name in ("criterion", "source", "n", "unscorable", "accuracy", "AUC", "mean | success", "mean | failure"):
        table.add_column(name)
    for a in report.agreement:
        table.add_row(a.criterion, a.source, str(a.n), str(a.unscorable), _fmt(a.accuracy), _fmt(a.auc), _fmt(a.mean_if_success), _fmt(a.mean_if_failure))
    console.print(table)
    if report.fit is not None:
        f = report.fit
        weights = ", ".join(f"{k} {v:.3f}" for k, v in f.weights.items())
        console.print(f"fitted weights ({f.method}, n={f.n}): {weights}; AUC {_fmt(f.auc)}, cross-validated AUC {_fmt(f.cv_auc)}")
    console.print(f"rubric total vs outcome: AUC {_fmt(report.total_auc)}")
