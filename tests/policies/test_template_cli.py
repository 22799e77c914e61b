"""``toolgym check-template`` and the template preflight of ``rollout --policy hf`` and ``train``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

from toolgym.cli import app
from toolgym.errors import ConfigError
from toolgym.policies.template_cli import parse_template_kwargs, preflight_template_dir
from toolgym.policies.template_probe import TemplateError

runner = CliRunner()


def _families():
    if "template_families" not in sys.modules:
        spec = importlib.util.spec_from_file_location("template_families", Path(__file__).with_name("template_families.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["template_families"] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules["template_families"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Saved tiny models (one layer, random weights) with a family's tokenizer and template."""
    families, out = _families(), {}
    for name in ("qwen25", "deepseek_v31", "qwen3"):
        folder = tmp_path_factory.mktemp(name)
        families.tiny_model(name).save_pretrained(folder)
        families.family_tokenizer(name).save_pretrained(folder)
        out[name] = folder
    return out


def test_check_template_reports_each_turn_and_its_verdict(model_dirs):
    result = runner.invoke(app, ["check-template", str(model_dirs["qwen3"]), "--format", "hermes"])
    assert result.exit_code == 0, result.output
    assert "turn 2: after user: new_row" in result.output and "verdict: faithful; rows start at turns [2]" in result.output
    kept = runner.invoke(app, ["check-template", str(model_dirs["qwen3"]), "--format", "hermes", "--history-rewrite", "keep_row"])
    assert "turn 2: after user: keep_row" in kept.output
    wrong = runner.invoke(app, ["check-template", str(model_dirs["qwen25"]), "--format", "kimi_k2"])
    assert wrong.exit_code == 1 and "pass --format hermes" in wrong.output and "verdict: refused" in wrong.output


def test_check_template_takes_template_kwargs_and_refuses_bad_ones(model_dirs):
    result = runner.invoke(app, ["check-template", str(model_dirs["qwen3"]), "--format", "hermes", "--template-kwargs", '{"enable_thinking": false}'])
    assert "rows start at turns [1, 2, 3]" in result.output  # Qwen3 drops the empty think block of every past turn
    with pytest.raises(ConfigError, match="--template-kwargs must be a JSON object"):
        parse_template_kwargs("enable_thinking=false")
    missing = runner.invoke(app, ["check-template", "/nonexistent/model"])
    assert missing.exit_code == 2 and "holding a tokenizer" in missing.output


def test_rollout_with_a_local_model_refuses_a_mismatched_format_before_any_work(model_dirs):
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "hf", "--model", str(model_dirs["qwen25"]),
                                 "--format", "kimi_k2", "--episodes", "1"])
    assert result.exit_code == 2 and "pass --format hermes" in result.output and "episodes/s" not in result.output
    with pytest.raises(TemplateError, match="check-template"):
        preflight_template_dir(model_dirs["qwen25"], tool_format="kimi_k2")


def test_training_preflight_accepts_string_argument_templates_and_refuses_a_wrong_format(model_dirs):
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import load_policy

    ok = TrainConfig.model_validate({"model": {"path": str(model_dirs["deepseek_v31"])}, "env": {"tool_format": "deepseek"}})
    model, tokenizer = load_policy(ok)  # DeepSeek's template concatenates string arguments: accepted
    assert tokenizer.chat_template
    wrong = TrainConfig.model_validate({"model": {"path": str(model_dirs["deepseek_v31"])}, "env": {"tool_format": "hermes"}})
    with pytest.raises(TemplateError, match="pass --format deepseek"):
        load_policy(wrong)
    thinking = TrainConfig.model_validate({"model": {"path": str(model_dirs["qwen3"]), "chat_template_kwargs": {"enable_thinking": False}},
                                           "env": {"tool_format": "hermes"}})
    assert load_policy(thinking)[1] is not None
