"""The shell task catalog: coverage, seeded generation, and gold replays in real sandboxes.

Gold replays run the whole shipped eval split on every backend present (bwrap always, docker
when dockerd and the image are there), through ``run_episodes`` so that the env's report
reaches ``Episode.metadata`` and the catalog rubric scores real episodes.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from tests.envs.shell.conftest import present_backends
from toolgym.envs import check_env
from toolgym.envs.api.splits import build_split, split_lines
from toolgym.envs.catalog.shell.draft import CATEGORIES
from toolgym.envs.catalog.shell.env import ShellTaskEnv
from toolgym.envs.catalog.shell.report import outcome_passes, summary_counts
from toolgym.envs.catalog.shell.tasks import EVAL_SIZE, FAMILIES, generate_task
from toolgym.envs.taskfile import load_tasks
from toolgym.envs.types import ToolCall
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.rollouts import run_episodes
from toolgym.rubrics.catalog import rubric_for
from toolgym.rubrics.checks.shell import ShellReport
from toolgym.rubrics.scoring import score_episodes_sync

ENV_ID = "toolgym/shell-v0"
EVAL = load_tasks(ShellTaskEnv.eval_split)
ONE_PER_FAMILY = EVAL[: len(FAMILIES)]


def make(backend: str = "bwrap") -> ShellTaskEnv:
    return toolgym.make(ENV_ID, backend=backend)  # type: ignore[return-value]


def test_the_catalog_covers_every_category_with_at_least_50_tasks():
    assert len(EVAL) == EVAL_SIZE >= 50
    assert {t.metadata["category"] for t in EVAL} == set(CATEGORIES)
    assert {t.metadata["family"] for t in ONE_PER_FAMILY} == set(FAMILIES)


def test_the_shipped_eval_split_is_what_the_generator_writes():
    lines = ShellTaskEnv.eval_split.read_text().splitlines()
    assert lines == split_lines(build_split(generate_task, EVAL_SIZE)), "rebuild it with the generator (see tasks.py)"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["train", "eval"]))
def test_generation_is_seeded_and_every_task_is_verifiable(seed, split):
    task = generate_task(seed, split)
    assert task == generate_task(seed, split)
    assert task.id == f"shell-{split}-{seed}" and task.gold_actions
    assert {g.name for g in task.gold_actions} <= {"bash", "write_file"}
    assert all(isinstance(v, str) and v for g in task.gold_actions for v in g.arguments.values())
    assert task.metadata.get("expected_files") or task.metadata.get("check") or task.expected.outputs
    assert all(out in (task.gold_answer or "") for out in task.expected.outputs)
    for path in {**task.initial_state["files"], **task.metadata.get("expected_files", {})}:
        assert not path.startswith("/") and ".." not in path.split("/")


@pytest.mark.parametrize("backend", present_backends())
def test_gold_replays_pass_on_the_whole_catalog(backend):
    episodes = run_episodes(lambda: make(backend), ScriptedPolicy.gold(EVAL), tasks=EVAL, concurrency=4)
    failed = [(e.task.metadata["family"], e.metadata) for e in episodes if e.reward != 1.0]
    assert not failed
    for task, episode in zip(EVAL, episodes, strict=True):  # the report reached the episode record
        shell = episode.metadata["shell"]
        ShellReport.model_validate(shell)  # the contract of the shell checks
        assert (shell["files"] is not None) == bool(task.metadata.get("expected_files"))
        assert (shell["tests"] is not None) == bool(task.metadata.get("check"))
    scores = score_episodes_sync(episodes, rubric_for(ENV_ID))
    assert [s.total for s in scores] == [1.0] * len(scores)


def test_doing_nothing_passes_no_task():
    episodes = run_episodes(lambda: make(), ScriptedPolicy({}, default=["Done, all good."]), tasks=ONE_PER_FAMILY, concurrency=4)
    assert [e.reward for e in episodes] == [0.0] * len(episodes)
    scores = score_episodes_sync(episodes, rubric_for(ENV_ID))
    assert [s.total for s in scores] == [0.0] * len(scores)  # the outcome gates hold nothing back


def test_a_wrong_file_after_the_gold_replay_fails_the_task():
    env = make()
    try:
        for task in [t for t in ONE_PER_FAMILY if t.metadata.get("expected_files")]:
            env.reset(options={"task": task})
            for i, gold in enumerate(task.gold_actions):
                env.step(env.format.render_turn("", [ToolCall(id=f"g{i}", name=gold.name, arguments=gold.arguments)]))
            assert outcome_passes(task, env.measure(), task.gold_answer or "")
            path, want = next((p, w) for p, w in sorted(task.metadata["expected_files"].items()))
            spoil = f"rm -f {path}" if want is not None else f"mkdir -p $(dirname {path}) && echo x > {path}"
            assert env.sandbox.sync.run(f"cd {env.sandbox.workspace} && {spoil}").exit_code == 0
            assert not outcome_passes(task, env.measure(), task.gold_answer or ""), task.metadata["family"]
    finally:
        env.close()


@pytest.mark.parametrize("backend", present_backends())
def test_check_env_passes(backend):
    check_env(make(backend))


def test_unknown_backend_names_the_choices():
    with pytest.raises(toolgym.errors.ConfigError, match="unknown sandbox backend 'dokcer'.*docker"):
        make("dokcer")


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_test_summaries_are_counted(ok, failures, errors):
    total = ok + failures + errors
    tail = "OK" if failures + errors == 0 else "FAILED (" + ", ".join(
        f"{k}={v}" for k, v in (("failures", failures), ("errors", errors)) if v) + ")"
    text = f"....\n{'-' * 70}\nRan {total} test{'s' if total != 1 else ''} in 0.004s\n\n{tail}\n"
    assert summary_counts(text) == {"passed": ok, "failed": failures, "errors": errors}
    assert summary_counts("no summary here") == {"passed": 0, "failed": 0, "errors": 0}


_EPISODE_HASHES = """
import hashlib, json, sys
import toolgym
from toolgym.envs.catalog.shell.env import ShellTaskEnv
from toolgym.envs.taskfile import load_tasks
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.rollouts import run_episodes
from toolgym.envs.catalog.shell.families_code import FAMILIES
tasks = [t for t in load_tasks(ShellTaskEnv.eval_split) if t.metadata["family"] in FAMILIES][: len(FAMILIES)]
make = lambda: toolgym.make("toolgym/shell-v0", backend=sys.argv[2])
episodes = run_episodes(make, ScriptedPolicy.gold(tasks), tasks=tasks, concurrency=int(sys.argv[1]))
for e in episodes:
    seen = json.dumps([m.model_dump(mode="json") for m in e.messages], sort_keys=True) + e.final_state_digest
    print(e.task.id, e.reward, hashlib.sha256(seen.encode()).hexdigest())
"""


@functools.cache
def _episode_hashes(seed: str, concurrency: str, backend: str) -> tuple[str, ...]:
    """One line per gold episode (task id, reward, hash of messages and final digest), from a new process."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", _EPISODE_HASHES, concurrency, backend], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(out.stdout.split("\n"))


@pytest.mark.parametrize("backend", present_backends())
def test_gold_episodes_are_identical_across_hash_seeds_and_concurrency(backend):
    """The code and git families (clock, commit ids, byte-code caches, test timings) in two processes.

    Docker's episodes must also equal bwrap's: both backends give the shell one environment
    (``protocol.shell_environment``), so the same seeds and actions give the same digests.
    """
    first, second = _episode_hashes("1", "1", backend), _episode_hashes("2", "3", backend)
    assert len(first) >= 10 and all(" 1.0 " in line for line in first if line)
    assert first == second
    if backend != "bwrap":
        assert first == _episode_hashes("1", "1", "bwrap")  # cached when the bwrap case ran first
