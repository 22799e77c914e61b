"""``toolgym synth``: the staged run, its exports (dataset, registered envs), resume after a kill, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import yaml

from toolgym.envs.registry import unregister
from toolgym.envs.synth.registered import register_run
from toolgym.envs.types import Task
from toolgym.errors import ConfigError
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.rollouts import run_episodes
from toolgym.rubrics.critics.base import FunctionCritic
from toolgym.rubrics.synth.config import SynthConfig, load_config
from toolgym.rubrics.synth.pipeline import run_synth
from toolgym.rubrics.synth.trajectories import judge_episodes, verdict

ROOT = Path(__file__).parents[3]
CLINIC = str(ROOT / "examples" / "configs" / "synth_clinic_openapi.yaml")


def config(out: Path, **extra) -> dict:
    cfg = {
        "name": "t", "seed": 1, "out": str(out),
        "tools": {"target": 120, "openapi": [CLINIC], "domains": 6, "shard_size": 30},
        "population": {"agents": 8, "tasks": 48, "shard_size": 16},
        "trajectories": {"count": 24, "shard_size": 8, "faults": {"default": {"error": 0.15}}},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_synth(SynthConfig.model_validate(config(tmp_path_factory.mktemp("synth") / "out")))


def test_counts_and_report(run):
    report = json.loads((run.out / "report.json").read_text())
    assert report["counts"] == {"tools": 120, "agents": 8, "tasks": 48, "episodes": 24, "kept": report["counts"]["kept"]}
    assert 0 < report["counts"]["kept"] < 24  # faults make some episodes fail their rubric
    assert report["pass_rate"] == pytest.approx(report["counts"]["kept"] / 24, abs=1e-4)
    assert [s["name"] for s in report["stages"]] == ["tools", "agents", "tasks", "trajectories", "judge", "export"]
    below = [d for d in report["dropped"] if d["kind"] == "below_threshold"]
    assert below and below[0]["count"] == 24 - report["counts"]["kept"]
    div = report["diversity"]
    assert div["distinct_tool_names"] == 120 and div["domains_covered"] >= 6 and 0 < div["distinct_2"] <= 1
    assert set(div["difficulty"]) <= {"easy", "medium", "hard"}
    assert report["agreement"]["pairs"] > 0 and report["agreement"]["agreement"] == 1.0  # offline judge: checks by construction


def test_dataset_is_openai_chat_rows_that_load_from_disk(run):
    data = datasets.load_from_disk(str(run.out / "dataset"))
    assert len(data) == run.report.counts["kept"]
    row = data[0]
    assert [m["role"] for m in row["messages"][:2]] == ["system", "user"]
    calls = [c for m in row["messages"] for c in m["tool_calls"]]
    assert calls and all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)
    answered = {m["tool_call_id"] for m in row["messages"] if m["role"] == "tool"}
    assert {c["id"] for c in calls} <= answered
    assert {t["function"]["name"] for t in json.loads(row["tools"])} >= {c["function"]["name"] for c in calls}
    assert all(r >= 0.8 for r in data["score"])


def test_tasks_carry_difficulty_and_verifiable_criteria(run):
    for task in run.tasks:
        synth = task.metadata["synth"]
        assert synth["difficulty"] in ("easy", "medium", "hard")
        ids = [item["id"] for item in task.metadata["rubric"]]
        assert set(synth["verifiable"]) <= set(ids)
        assert len(task.gold_actions) >= {"easy": 1, "medium": 2, "hard": 2}[synth["difficulty"]] or len(task.tools) < 2


def test_registered_envs_replay_their_gold_actions(run):
    ids = register_run(run.out)
    try:
        assert ids == run.env_ids
        evolved_clinic = {r.name for r in run.tools if r.domain == "clinic_api" and r.operator != "seed"}
        assert evolved_clinic and any(set(a.tools) & evolved_clinic for a in run.agents)  # OpenAPI tools evolved, and are used
        for env_id in ids:
            tasks = [Task.model_validate(t) for t in map(json.loads, (run.out / "tasks.jsonl").read_text().splitlines())
                     if t["metadata"]["agent"] == env_id.split("/")[1][:-3]]
            episodes = run_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks)
            assert episodes and all(not e.error_counts() and e.failure is None for e in episodes)
            assert all(e.reward == 1.0 for e in episodes if e.task.expected.outputs)
    finally:
        for env_id in ids:
            unregister(env_id)


def _outputs(out: Path) -> dict:
    data = datasets.load_from_disk(str(out / "dataset"))
    files = {f: (out / f).read_text() for f in ("tools.jsonl", "agents.jsonl", "tasks.jsonl", "manifest.json")}
    report = json.loads((out / "report.json").read_text())
    return {"files": files, "rows": data.to_list(), "counts": report["counts"], "dropped": report["dropped"], "diversity": report["diversity"]}


@pytest.mark.slow
def test_a_run_killed_mid_stage_resumes_to_the_same_output(run, tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(config(out)))
    cmd = [sys.executable, "-m", "toolgym.cli", "synth", str(path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "cache" / "tools").glob("g*.jsonl"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "report.json").exists() and not (out / "dataset").exists()  # nothing half-written exported
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _outputs(out) == _outputs(run.out)
    report = json.loads((out / "report.json").read_text())
    assert next(s for s in report["stages"] if s["name"] == "tools")["cache_hits"] >= 0


def test_hostile_and_malformed_seeds_are_counted_and_the_run_goes_on(tmp_path):
    hostile = yaml.safe_load(Path(CLINIC).read_text())
    hostile["components"]["schemas"]["Node"] = {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
    hostile["paths"]["/nodes"] = {"post": {"operationId": "createNode", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}},
                                           "responses": {"200": {"description": "ok"}}}}
    hostile["info"]["title"] = "Hostile clinic"
    (tmp_path / "hostile.yaml").write_text(yaml.safe_dump(hostile))
    (tmp_path / "swagger.yaml").write_text("swagger: '2.0'\npaths: {}\n")
    cfg = config(tmp_path / "out", tools={"target": 60, "openapi": [str(tmp_path / "hostile.yaml"), str(tmp_path / "swagger.yaml")],
                                          "envs": ["toolgym/no-such-env-v0"], "domains": 3, "shard_size": 30},
                 population={"agents": 3, "tasks": 6}, trajectories={"count": 3})
    result = run_synth(SynthConfig.model_validate(cfg))
    kinds = {(d.stage, d.kind): d.count for d in result.report.dropped}
    assert kinds[("seeds", "hostile_input")] == 1  # the recursive operation
    assert kinds[("seeds", "malformed_input")] == 2  # the swagger file, the unknown env
    assert result.report.counts["tools"] == 60 and (tmp_path / "out" / "dataset").exists()


def test_a_failing_judge_is_a_counted_judge_failure(run):
    episodes = [_episode(run)]

    def broken(episode, criterion):
        raise RuntimeError("judge endpoint down")

    scores = asyncio.run(judge_episodes(episodes, FunctionCritic("judge", broken)))
    why = verdict(episodes[0], scores[0], 0.8)
    assert why is not None and why.kind == "judge_failed"


def _episode(run):
    from toolgym.rollouts.episode import Episode

    data = (run.out / "cache" / "trajectories").glob("s*.jsonl")
    return Episode.model_validate(json.loads(next(iter(sorted(data))).read_text().splitlines()[0])["episode"])


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tools: {target: -1}\n")
    with pytest.raises(ConfigError, match="field 'tools.target'"):
        load_config(path)
    path.write_text("trajectories: {policy: {kind: openai}}\n")
    cfg = load_config(path, out=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="needs base_url"):
        run_synth(cfg.model_copy(update={"tools": cfg.tools.model_copy(update={"target": 10, "domains": 2})}))
    assert os.environ.get("TOOLGYM_SYNTH_RUNS") is None


@pytest.mark.slow
def test_token_rows_for_a_tokenizer(run, tmp_path):
    from transformers import AutoTokenizer

    from toolgym.policies.models.build import cached_tiny_model
    from toolgym.rubrics.synth.export import add_token_rows, write_dataset

    folder = str(cached_tiny_model("qwen3"))
    rows = datasets.load_from_disk(str(run.out / "dataset")).to_list()[:3]
    add_token_rows(rows, folder)
    write_dataset(rows, tmp_path / "tokens")
    data = datasets.load_from_disk(str(tmp_path / "tokens"))
    text = AutoTokenizer.from_pretrained(folder).decode(data[0]["input_ids"])
    first_call = next(c for m in rows[0]["messages"] for c in m["tool_calls"])
    assert first_call["function"]["name"] in text and rows[0]["messages"][1]["content"][:20] in text


@pytest.mark.slow
def test_tools_on_ray_actors_equal_tools_in_process(ray_local, tmp_path):
    from toolgym.envs.synth.toolset import ToolsConfig, build_tools
    from toolgym.rubrics.synth.pipeline import ray_mapper

    cfg = ToolsConfig(target=90, openapi=[CLINIC], domains=3, shard_size=15)
    local = build_tools(cfg, tmp_path / "local")
    remote = build_tools(cfg, tmp_path / "ray", mapper=ray_mapper(2))
    assert [r.model_dump() for r in remote.records] == [r.model_dump() for r in local.records]
    assert len(list((tmp_path / "ray" / "tools").glob("g*.jsonl"))) == len(list((tmp_path / "local" / "tools").glob("g*.jsonl")))
