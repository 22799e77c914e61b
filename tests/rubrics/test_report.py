import json

from rubric_helpers import ENV
from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.envs.catalog.unitconv.tasks import generate_tasks
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, run_episodes, save_episodes
from toolgym.rubrics.report import render_report, score_file


def _file(tmp_path):
    tasks = generate_tasks(6, seed=40)
    eps = run_episodes(ENV, ScriptedPolicy.gold(tasks), tasks=tasks) + run_episodes(ENV, ChaosPolicy(), tasks=tasks, seed=1)
    return save_episodes(eps, tmp_path / "eps.jsonl")


def test_score_file_uses_the_env_rubric_and_summarizes(tmp_path):
    report = score_file(_file(tmp_path))
    assert report.rubrics == ["unitconv"]
    assert len(report.scores) == 12
    by_id = {c.id: c for c in report.criteria}
    assert by_id["state"].scored == 12 and by_id["state"].mean == 0.5
    assert by_id["clarity"].skipped == 12 and by_id["clarity"].scored == 0
    assert report.metrics["score/unscorable_frac"] == 0.0


def test_rich_breakdown_names_every_criterion(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=200)
    render_report(score_file(_file(tmp_path), "unitconv"), console, per_episode=True)
    text = console.export_text()
    for cid in ("format", "state", "answer", "efficiency", "clarity", "unitconv-40/0"):
        assert cid in text


def test_cli_score_command(tmp_path):
    path = _file(tmp_path)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["score", str(path), "--rubric", "toolgym/unitconv-v0", "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "criteria" in result.output and "final_state_matches_gold" in result.output
    assert len(json.loads(out.read_text())["scores"]) == 12
    bad = CliRunner().invoke(app, ["score", str(path), "--rubric", "unitcnv"])
    assert bad.exit_code == 2
    assert "Did you mean 'unitconv'" in bad.output
