"""Tool evolution: operators, proposers (fallback and any policy), validation, dedup, the cached stage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.aio import run_sync
from toolgym.envs.sim.spec import compile_tool
from toolgym.envs.synth.evolve import Deduper, FallbackProposer, PolicyProposer, param_signature, validate
from toolgym.envs.synth.operators import plan_jobs
from toolgym.envs.synth.records import ToolRecord
from toolgym.envs.synth.taxonomy import generated_taxonomy, parse_taxonomy
from toolgym.envs.synth.toolset import ToolsConfig, build_tools
from toolgym.errors import ConfigError
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.policy import PolicyTurn

CLINIC = str(Path(__file__).parents[3] / "examples" / "configs" / "synth_clinic_openapi.yaml")
TAX = generated_taxonomy(n_domains=6, seed=0)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = ToolsConfig(target=200, openapi=[CLINIC], domains=6, shard_size=40)
    return cfg, tmp_path_factory.mktemp("tools"), build_tools(cfg, tmp_path_factory.mktemp("tools0"))


def test_stage_keeps_the_target_of_valid_unique_tools_from_every_operator(small):
    _, _, out = small
    assert len(out.records) == 200
    assert len({r.name for r in out.records}) == 200
    assert set(Counter(r.operator for r in out.records)) == {"seed", "new_operation", "new_parameter", "neighbour_variant", "composition"}
    for r in out.records:
        compile_tool(r.tool)
    names = {r.name for r in out.records}
    assert all(p in names for r in out.records for p in r.parents)  # lineage points at kept tools


def test_a_killed_stage_resumes_to_the_same_tools(small, tmp_path):
    cfg, _, first = small
    build_tools(cfg, tmp_path)
    shards = sorted((tmp_path / "tools").glob("g*.jsonl"))
    for shard in shards[len(shards) // 2 :]:  # as if killed half way: later shards never written
        shard.unlink()
    again = build_tools(cfg, tmp_path)
    assert [r.model_dump() for r in again.records] == [r.model_dump() for r in first.records]


def test_a_changed_config_does_not_reuse_the_cache(small, tmp_path):
    cfg, _, _ = small
    build_tools(cfg, tmp_path)
    other = build_tools(cfg.model_copy(update={"target": 120}), tmp_path)
    assert len(other.records) == 120
    assert not any((tmp_path / "tools").glob("*.tmp"))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 3))
def test_jobs_of_any_shard_equal_the_same_slice_of_the_whole_generation(a, b, generation):
    start, stop = min(a, b), max(a, b)
    pool = run_sync(FallbackProposer().propose(plan_jobs(TAX, [], 0, range(30)), TAX, {}))
    records = [r for r in (validate(p, 0) for p in pool) if isinstance(r, ToolRecord)]
    whole = plan_jobs(TAX, records, generation, range(0, 60), seed=7)
    assert plan_jobs(TAX, records, generation, range(start, stop), seed=7) == whole[start:stop]


def _record(name: str, props: dict, entity: str = "shop_item") -> ToolRecord:
    tool = {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": props}}}
    return ToolRecord.model_validate({"tool": {"spec": tool}, "domain": "shop", "entity": entity, "operator": "new_operation"})


def test_dedup_drops_taken_names_and_near_identical_parameters_only():
    dedup = Deduper(threshold=0.9)
    first = _record("get_shop_item", {"shop_item_id": {"type": "string"}})
    dedup.add(first)
    assert "taken" in dedup.reason(_record("get_shop_item", {"x": {"type": "integer"}}))
    assert "similarity" in dedup.reason(_record("get_shop_item_v2", {"shop_item_id": {"type": "string"}}))
    assert dedup.reason(_record("get_shop_item_by_note", {"shop_item_id": {"type": "string"}, "note": {"type": "string"}})) is None
    assert dedup.reason(_record("get_shop_item_v2", {"shop_item_id": {"type": "string"}}, entity="bank_item")) is None


@given(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.sampled_from([{"type": "string"}, {"type": "integer", "maximum": 3}]), max_size=4))
def test_param_signature_ignores_descriptions_but_not_types_or_constraints(props):
    described = {k: {**v, "description": "words"} for k, v in props.items()}
    assert param_signature({"properties": props}) == param_signature({"properties": described})


GOOD = json.dumps({"name": "approve_shop_refund", "description": "Approve a refund.",
                   "parameters": {"type": "object", "properties": {"refund_id": {"type": "string"}}, "required": ["refund_id"]},
                   "returns": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}})
BAD_SPEC = json.dumps({"name": "broken", "parameters": {"type": "objekt"}})


@pytest.mark.parametrize("fallback", [True, False])
def test_policy_replies_are_used_or_counted_by_kind(fallback):
    replies = {0: GOOD, 1: "Sure! Here is a tool: approve refunds", 2: "", 3: BAD_SPEC, 4: "[1, 2]"}

    def reply(request):
        return replies[int(request.episode_id.rsplit("-", 1)[1]) % 5]

    jobs = plan_jobs(TAX, [], 0, range(5))
    proposals = run_sync(PolicyProposer(ScriptedPolicy(reply), fallback=fallback).propose(jobs, TAX, {}))
    kinds = [[f.kind for f in p.failures] for p in proposals]
    assert kinds == [[], ["garbage_answer"], ["no_answer"], [], ["garbage_answer"]]
    assert proposals[0].source == "policy" and proposals[0].tool["function"]["name"] == "approve_shop_refund"
    assert validate(proposals[3], 0).kind == "invalid_spec"  # parsed, then refused by the schema checks
    for p in (proposals[1], proposals[2], proposals[4]):
        assert (p.tool is not None) == fallback
        assert isinstance(validate(p, 0), ToolRecord) == fallback


class _Raising:
    async def generate(self, requests):
        raise RuntimeError("connection refused")


class _Short:
    async def generate(self, requests):
        return [PolicyTurn(text=GOOD)]


@pytest.mark.parametrize("policy", [_Raising(), _Short()])
def test_a_policy_that_raises_or_answers_too_few_counts_every_job_as_no_answer(policy):
    jobs = plan_jobs(TAX, [], 0, range(3))
    proposals = run_sync(PolicyProposer(policy).propose(jobs, TAX, {}))
    assert [[f.kind for f in p.failures] for p in proposals] == [["no_answer"]] * 3
    assert all(isinstance(validate(p, 0), ToolRecord) for p in proposals)  # the fallback filled in


def test_malformed_taxonomy_domains_are_dropped_and_counted():
    raw = {"domains": [
        {"name": "clinic", "neighbours": ["gone"], "entities": [{"name": "clinic_patient", "fields": {"name": {"type": "string"}}}]},
        {"name": "Bad Name!", "entities": []},
        {"name": "shop", "entities": "not a list"},
        "junk",
    ]}
    taxonomy, failures = parse_taxonomy(raw)
    assert [d.name for d in taxonomy.domains] == ["clinic"]
    assert taxonomy.domains[0].neighbours == []
    assert Counter(f.kind for f in failures) == {"malformed_input": 3}
    assert "field 'name'" in failures[0].message
    with pytest.raises(ConfigError, match="no usable domain"):
        parse_taxonomy({"domains": ["junk"]})
