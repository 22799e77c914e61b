"""Custom environments from the CLI (module path, --import, entry points), user errors, and `toolgym view`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from typer.testing import CliRunner

import toolgym
from toolgym.cli import app
from toolgym.rollouts import ChaosPolicy, load_episodes, run_episodes, save_episodes

runner = CliRunner()

ENV_MODULE = textwrap.dedent(
    '''
    """A user's environment, written outside toolgym."""
    import toolgym
    from toolgym import Task
    from toolgym.envs.api import ApiEnv


    class Counter:
        def __init__(self):
            self.n = 0

        def bump(self, by: int) -> int:
            """Add to the counter.

            Args:
                by: How much to add.
            """
            self.n += by
            return self.n


    CounterEnv = ApiEnv.from_class(Counter, task_generator=lambda seed: Task(id=f"t{seed}", instruction=f"Bump by {seed}."))


    def register():
        toolgym.register("mypkg/counter-v0", CounterEnv, description="a counter")


    REGISTER_ON_IMPORT = True
    if REGISTER_ON_IMPORT:
        toolgym.register("mypkg/counter-imported-v0", CounterEnv)
    '''
)


def _package(tmp_path):
    (tmp_path / "mypkg_envs.py").write_text(ENV_MODULE)
    dist = tmp_path / "mypkg_envs-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[toolgym.envs]\ncounter = mypkg_envs:register\n")
    return tmp_path


def _cli(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(_package(tmp_path)), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "toolgym.cli", *args], capture_output=True, text=True, env=env, timeout=120)


def test_custom_env_by_module_path_and_by_import(tmp_path):
    res = _cli(tmp_path, "rollout", "mypkg_envs:CounterEnv", "--policy", "chaos", "--episodes", "5")
    assert res.returncode == 0, res.stderr
    assert "mypkg_envs/CounterEnv-v0" in res.stdout
    res = _cli(tmp_path, "rollout", "mypkg/counter-imported-v0", "--import", "mypkg_envs", "--policy", "chaos", "--episodes", "3")
    assert res.returncode == 0, res.stderr


def test_custom_env_by_entry_point(tmp_path):
    res = _cli(tmp_path, "rollout", "mypkg/counter-v0", "--policy", "chaos", "--episodes", "3")
    assert res.returncode == 0, res.stderr + res.stdout
    res = _cli(tmp_path, "envs")
    assert "mypkg/counter-v0" in res.stdout


def test_user_errors_exit_2_without_traceback(tmp_path):
    for args in (["rollout", "nomodule_xyz:Env"], ["rollout", "toolgym/unitconv-v0", "--seed", "-1"], ["view", str(tmp_path / "none.jsonl")],
                 ["rollout", "toolgym/unitconv-v0", "--import", "mypkg_envs_typo"]):
        res = _cli(tmp_path, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stdout + res.stderr


def test_rollout_saves_before_scoring(tmp_path):
    out = tmp_path / "eps.jsonl"
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--policy", "chaos", "--episodes", "4", "--out", str(out), "--rubric", "no_such"])
    assert result.exit_code == 2 and "no catalog rubric named 'no_such'" in result.output
    assert len(load_episodes(out)) == 4
    result = runner.invoke(app, ["rollout", "toolgym/unitconv-v0", "--episodes", "4", "--rubric", "unitconv"])
    assert result.exit_code == 0, result.output


def test_reregistration_warns_and_spec_is_set():
    env = toolgym.make("toolgym/unitconv-v0")
    assert env.spec is not None and env.spec.id == "toolgym/unitconv-v0"
    from toolgym.envs.registry import unregister

    toolgym.register("tests/twice-v0", "toolgym.envs.catalog.unitconv.env:UnitConvEnv")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            toolgym.register("tests/twice-v0", "toolgym.envs.catalog.unitconv.env:UnitConvEnv")
        assert any("Overriding environment" in str(w.message) for w in caught)
    finally:
        unregister("tests/twice-v0")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_view_filters_and_pages(tmp_path, suffix):
    eps = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=12)
    path = save_episodes(eps, tmp_path / f"e{suffix}")
    with_errors = sum(1 for e in eps if e.error_counts())
    result = runner.invoke(app, ["view", str(path), "--errors", "--page-size", "2", "--score"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"{with_errors} of 12 episodes match" in result.output
    assert "→" in result.output or "ERROR" in result.output  # tool calls or error observations are shown
    assert "criterion" in result.output  # the per-criterion score table
    result = runner.invoke(app, ["view", str(path), "--stop-reason", "no_such_reason"])
    assert result.exit_code == 0 and "0 of 12 episodes match" in result.output
