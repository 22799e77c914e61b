from __future__ import annotations

from typer.testing import CliRunner

from toolgym.cli import app
from toolgym.rollouts import load_episodes

runner = CliRunner()


def test_envs_lists_the_shipped_env():
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0 and "toolgym/unitconv-v0" in result.output


def test_rollout_1000_gold_replays_all_reach_expected_state(tmp_path):
    out = tmp_path / "gold.jsonl"
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "scripted", "--episodes", "1000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rollout/expected_state_rate" in result.output and "episodes_per_s" in result.output
    episodes = load_episodes(out)
    assert len(episodes) == 1000 and len({e.task.id for e in episodes}) == 1000
    assert all(e.reached_expected_state for e in episodes)


def test_rollout_chaos_reports_errors(tmp_path):
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "chaos", "--episodes", "50", "--format", "kimi_k2"])
    assert result.exit_code == 0, result.output
    assert "rollout/errors/parse_error" in result.output


def test_unknown_env_is_a_clean_error():
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v7"])
    assert result.exit_code == 2
    assert "Did you mean 'toolgym/unitconv-v0'" in " ".join(result.output.split())  # rich wraps lines


def test_demo_runs_every_shipped_env_and_a_tiny_model(tmp_path):
    import json

    import toolgym

    out = tmp_path / "quick.json"
    result = runner.invoke(app, ["demo", "--quick", "--episodes", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())
    shipped = [e for e in toolgym.envs.registered() if e.startswith("toolgym/")]
    for env in shipped:
        (run,) = [r for r in runs if r["env_id"] == env and r["policy"] == "scripted"]
        assert run["scores"]["score/mean"] == 1.0  # gold replays score full marks
        if run["has_expected_state"]:  # and reach the expected state where the tasks state one
            assert run["summary"]["rollout/expected_state_rate"] == 1.0
    assert {r["policy"] for r in runs} >= {"chaos", "tiny-kimi"}


def test_rollout_with_a_tiny_model_and_scores():
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "hf", "--model", "tiny-qwen3", "--episodes", "4", "--max-new-tokens", "16", "--score"])
    assert result.exit_code == 0, result.output
    assert "score/mean" in result.output and "rollout/episodes" in result.output


def test_model_policies_explain_missing_options():
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "openai"])
    assert result.exit_code == 2 and "--base-url" in result.output
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "hf"])
    assert result.exit_code == 2 and "--model" in result.output


def test_train_imports_modules_before_reading_the_config(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml"), "--import", "no_such_module_for_toolgym"])
    assert result.exit_code == 2
    assert "cannot import 'no_such_module_for_toolgym'" in result.output
