"""TrainConfig and run set-up: bad input is refused before any work, naming the field and the fix."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.errors import ConfigError, ToolgymError
from toolgym.trainers.config import TrainConfig


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"algoritm": {}}, ["unknown field 'algoritm'", "Did you mean 'algorithm'"]),
        ({"optim": {"learning_rate": 1e-3}}, ["optim", "unknown field 'learning_rate'"]),
        ({"algorithm": {"name": "ppo"}}, ["algorithm.value_model is required for PPO", "'head'", "'critic'"]),
        ({"algorithm": {"group_size": 1}}, ["algorithm.group_size must be >= 2 for GRPO"]),
        ({"algorithm": {"name": "ppo", "value_model": "head", "loss": "k2"}}, ["algorithm.loss='k2'", "PPO uses"]),
        ({"algorithm": {"value_model": "head"}}, ["unused by GRPO"]),
        ({"algorithm": {"loss": "dapo", "clip_low": 0.3, "clip_high": 0.2}}, ["clip_high (0.2) is below clip_low (0.3)"]),
        ({"optim": {"minibatch_size": 6, "micro_batch_size": 4}}, ["multiple of optim.micro_batch_size"]),
        ({"ptx": {"weight": 0.1}}, ["ptx.weight > 0 needs data", "ptx.gold_tasks"]),
        ({"optim": {"lr": -1}}, ["optim.lr", "greater than 0"]),
        ({"model": {"path": None, "tiny": None}}, ["model.path or model.tiny is required"]),
        ([1, 2], ["expected a mapping of sections"]),
    ],
)
def test_bad_configs_name_the_field_and_the_fix(data, needles):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(data)
    for needle in needles:
        assert needle in str(err.value)


@settings(max_examples=25, deadline=None)
@given(
    loss=st.sampled_from(["grpo", "dapo", "dr_grpo", "k2"]),
    group=st.integers(2, 16),
    lr=st.floats(1e-7, 1.0),
    micro=st.integers(1, 8),
    steps=st.integers(1, 4),
    t0=st.floats(0.0, 2.0),
    t1=st.none() | st.floats(0.0, 2.0),
    decay=st.integers(1, 50),
)
def test_yaml_round_trip_and_temperature_schedule(tmp_path_factory, loss, group, lr, micro, steps, t0, t1, decay):
    cfg = TrainConfig.from_dict({
        "algorithm": {"loss": loss, "group_size": group, "clip_high": 0.3},
        "optim": {"lr": lr, "micro_batch_size": micro, "minibatch_size": micro * steps},
        "rollout": {"temperature": t0, "final_temperature": t1, "temperature_decay_iterations": decay},
    })
    path = cfg.to_yaml(tmp_path_factory.mktemp("cfg") / "config.yaml")
    again = TrainConfig.from_yaml(path)
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    temps = [cfg.temperature_at(i) for i in range(decay + 3)]
    low, high = min(t0, t1 if t1 is not None else t0), max(t0, t1 if t1 is not None else t0)
    assert all(low - 1e-9 <= t <= high + 1e-9 for t in temps)
    assert temps[0] == pytest.approx(t0) and temps[-1] == pytest.approx(t1 if t1 is not None else t0)
    steps_ = [b - a for a, b in zip(temps, temps[1:], strict=False)]
    assert all(s <= 1e-12 for s in steps_) or all(s >= -1e-12 for s in steps_)  # monotone


def test_fingerprint_ignores_run_length_and_outputs_only():
    a = TrainConfig.from_dict({"run": {"iterations": 3, "out_dir": "x"}})
    assert a.fingerprint() == TrainConfig.from_dict({"run": {"iterations": 9, "out_dir": "y", "plots": False}}).fingerprint()
    assert a.fingerprint() != TrainConfig.from_dict({"optim": {"lr": 2e-5}}).fingerprint()
    assert a.fingerprint() != TrainConfig.from_dict({"run": {"seed": 1}}).fingerprint()


def test_missing_yaml_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(bad)


def test_model_folder_without_a_tool_template_is_refused(tmp_path):
    pytest.importorskip("transformers")
    from toolgym.policies.models import cached_tiny_model
    from toolgym.trainers.run import load_policy

    folder = tmp_path / "model"
    shutil.copytree(cached_tiny_model("kimi"), folder)
    for name in ("chat_template.jinja",):
        (folder / name).unlink(missing_ok=True)
    plain = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    (folder / "chat_template.jinja").write_text(plain)
    cfg = TrainConfig.from_dict({"model": {"path": str(folder)}})
    with pytest.raises(ConfigError) as err:
        load_policy(cfg)
    assert "model.path" in str(err.value) and "tool" in str(err.value) and "chat template" in str(err.value)


def test_resume_from_another_config_is_refused(tmp_path):
    pytest.importorskip("torch")
    from toolgym.trainers.checkpoint import checkpoint_root
    from toolgym.trainers.run import prepare_out_dir

    out = tmp_path / "run"
    first = TrainConfig.from_dict({"run": {"out_dir": str(out)}})
    folder = checkpoint_root(out) / "iter-000001"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"")
    first.to_yaml(folder / "config.yaml")
    (checkpoint_root(out) / "latest").write_text("iter-000001")
    assert prepare_out_dir(first, resume=True)[1] == folder
    other = TrainConfig.from_dict({"run": {"out_dir": str(out)}, "optim": {"lr": 5e-4}})
    with pytest.raises(ConfigError) as err:
        prepare_out_dir(other, resume=True)
    assert "optim.lr" in str(err.value) and "another config" in str(err.value)
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        prepare_out_dir(first, resume=False)
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        prepare_out_dir(TrainConfig.from_dict({"run": {"out_dir": str(tmp_path / "empty")}}), resume=True)


def test_cli_reports_config_errors_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from toolgym.cli import app

    bad = tmp_path / "c.yaml"
    bad.write_text("algorithm:\n  name: ppo\n")
    result = CliRunner().invoke(app, ["train", str(bad)])
    assert result.exit_code == 2
    assert "value_model is required for PPO" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"tool_format": "kimi_k3"}, "Did you mean 'kimi_k2'"), ({"id": "toolgym/unitconv-v9"}, "unitconv-v0"),
     ({"rubric": "unitcon"}, "no catalog rubric named 'unitcon'")],
)
def test_env_and_rubric_errors_come_before_the_model_loads(tmp_path, monkeypatch, env, needle):
    pytest.importorskip("torch")
    from toolgym.trainers import run

    monkeypatch.setattr(run, "load_policy", lambda cfg: pytest.fail("the model was loaded before the config was checked"))
    with pytest.raises(ToolgymError, match=needle):  # ConfigError or UnknownEnvError
        run.train(TrainConfig.from_dict({"env": env, "run": {"out_dir": str(tmp_path / "r")}}))


def test_the_shipped_base_checkpoint_loads_and_its_template_renders_tool_calls():
    pytest.importorskip("transformers")
    from toolgym.trainers.run import load_policy

    model, tokenizer = load_policy(TrainConfig.from_dict({"model": {"tiny": "base"}, "env": {"tool_format": "kimi_k2"}}))
    assert model.config.model_type == "deepseek_v3" and tokenizer.chat_template
