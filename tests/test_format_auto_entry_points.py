"""--format auto (CLI) and env.tool_format: auto (training config) read the model's chat template."""

from __future__ import annotations

import pytest

from toolgym.errors import ConfigError

QWEN3_CODER = "{{ '<tool_call>\\n<function=' + tc.name + '>\\n' }}{{ '<parameter=' + k + '>\\n' }}{{ '</parameter>' }}"
HARMONY = "<|start|>assistant<|channel|>commentary to=functions.{{ tc.name }} <|constrain|>json<|message|>{{ args }}<|call|>"


def test_cli_format_auto_reads_the_model_folder(tmp_path):
    from toolgym.cli import PolicyKind, _auto_format

    (tmp_path / "chat_template.jinja").write_text(QWEN3_CODER)
    assert _auto_format(PolicyKind.hf, str(tmp_path)) == "qwen3_coder"
    with pytest.raises(ConfigError, match="--policy hf --model DIR"):
        _auto_format(PolicyKind.scripted, None)


def test_train_config_format_auto_reads_model_path(tmp_path):
    from toolgym.trainers.config import TrainConfig, env_source

    (tmp_path / "chat_template.jinja").write_text(HARMONY)
    config = TrainConfig.model_validate({"model": {"path": str(tmp_path)}, "env": {"tool_format": "auto"}})
    assert env_source(config)().unwrapped.format.name == "harmony"
    tiny = TrainConfig.model_validate({"model": {"tiny": "kimi"}, "env": {"tool_format": "auto"}})
    with pytest.raises(ConfigError, match="model.path"):
        env_source(tiny)
