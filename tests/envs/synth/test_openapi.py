"""OpenAPI 3 import: a real document becomes tools that run; hostile documents are refused per operation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.sim import SimulatedToolEnv
from toolgym.envs.sim.schema import SchemaError
from toolgym.envs.sim.spec import compile_tool
from toolgym.envs.synth import FallbackSynthesizer
from toolgym.envs.synth.openapi import MAX_ENUM, OpenAPIError, import_openapi, load_openapi, tool_name
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.rollouts import run_episodes

CLINIC = Path(__file__).parents[3] / "examples" / "configs" / "synth_clinic_openapi.yaml"


def clinic() -> dict:
    return yaml.safe_load(CLINIC.read_text())


def test_clinic_document_imports_every_operation_with_typed_parameters():
    imported = load_openapi(CLINIC)
    assert imported.refused == {}
    assert len(imported.tools) == 23
    by_name = {t.name: t for t in imported.tools}
    create = by_name["create_patient"].spec.function.parameters
    assert create["required"] == ["first_name", "last_name", "birth_date"]  # from the $ref'd request body
    assert create["properties"]["phone"]["type"] == ["string", "null"]  # OpenAPI nullable
    get = by_name["get_patient"]
    assert get.spec.function.parameters["required"] == ["patient_id"]  # a path-level $ref'd parameter
    assert get.returns is not None and "allOf" not in get.returns and "id" in get.returns["properties"]  # allOf merged
    assert "$ref" not in str([t.model_dump() for t in imported.tools])
    assert by_name["list_doctors"].kind == "list" and by_name["cancel_appointment"].kind == "delete"


def test_clinic_tools_run_in_a_simulated_env_and_gold_replays_pass():
    tools = [compile_tool(t) for t in load_openapi(CLINIC).tools]  # compiled once, shared by every env
    tasks = FallbackSynthesizer(3).tasks(tools, 30)
    episodes = run_episodes(lambda: SimulatedToolEnv(tools, tasks=tasks), ScriptedPolicy.gold(tasks), tasks=tasks)
    assert all(not e.error_counts() for e in episodes)
    assert all(e.reward == 1.0 for e in episodes if e.task.expected.outputs)


def _with(doc: dict, path: str, method: str, op: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["paths"][path] = {method: op}
    return doc


def _body(schema: dict) -> dict:
    return {"operationId": "hostileOp", "requestBody": {"content": {"application/json": {"schema": schema}}}, "responses": {"200": {"description": "ok"}}}


@pytest.mark.parametrize(("schema", "components", "words"), [
    ({"$ref": "#/components/schemas/Node"}, {"Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}}, "recursive"),
    ({"type": "object", "properties": {"c": {"type": "string", "enum": [f"v{i}" for i in range(MAX_ENUM + 1)]}}}, {}, "enum lists"),
    ({"type": "object", "properties": {"p": {"type": "string", "pattern": "^(a|aa)+$"}}}, {}, "backtracks"),
    ({"$ref": "https://evil.example/schema.json"}, {}, "outside the document"),
    ({"$ref": "#/components/schemas/Missing"}, {}, "points at nothing"),
])
def test_hostile_operations_are_refused_and_the_rest_still_import(schema, components, words):
    doc = clinic()
    doc["components"]["schemas"].update(components)
    imported = import_openapi(_with(doc, "/hostile", "post", _body(schema)))
    assert list(imported.refused) == ["POST /hostile"]
    assert words in imported.refused["POST /hostile"]
    assert len(imported.tools) == 23


def test_mutually_recursive_refs_through_parameters_are_refused():
    doc = clinic()
    doc["components"]["parameters"]["Loop"] = {"$ref": "#/components/parameters/Loop2"}
    doc["components"]["parameters"]["Loop2"] = {"$ref": "#/components/parameters/Loop"}
    op = {"operationId": "loopy", "parameters": [{"$ref": "#/components/parameters/Loop"}], "responses": {"200": {"description": "ok"}}}
    imported = import_openapi(_with(doc, "/loop", "get", op))
    assert "loops" in imported.refused["GET /loop"]


@pytest.mark.parametrize(("doc", "words"), [
    ([], "expected an OpenAPI object"),
    ({"swagger": "2.0", "paths": {}}, "only OpenAPI 3.x"),
    ({"openapi": "3.1.0", "paths": {}}, "'paths' must be a non-empty object"),
])
def test_unusable_documents_name_the_problem(doc, words):
    with pytest.raises(OpenAPIError, match=words):
        import_openapi(doc)


def test_tool_names_are_valid_function_names():
    assert tool_name("listBooks") == "list_books"
    assert tool_name("get_/books/{id}") == "get_books_id"
    assert tool_name("3dPrint") == "op_3d_print"


_schemas = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean"])}),
    lambda inner: st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=3)}),
    max_leaves=6,
)
_junk = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.from_regex(r"/[a-z]{1,8}(/\{[a-z]{1,5}_id\})?", fullmatch=True), st.sampled_from(["get", "post", "put", "patch", "delete"]),
                              st.one_of(_schemas, _junk), st.one_of(_schemas, _junk)), min_size=1, max_size=6))
def test_any_document_imports_or_refuses_without_crashing(ops):
    paths: dict = {}
    for path, method, body, response in ops:
        op = {"requestBody": {"content": {"application/json": {"schema": body}}},
              "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": response}}}}}
        if "{" in path:
            name = path.split("{")[1].rstrip("}")
            op["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]
        paths.setdefault(path, {})[method] = op
    imported = import_openapi({"openapi": "3.0.0", "paths": paths})
    assert len(imported.tools) + len(imported.refused) >= 1
    for tool in imported.tools:  # every imported tool is a working simulated tool
        env = SimulatedToolEnv([tool])
        env.close()
    for why in imported.refused.values():
        assert why


def test_schema_error_is_the_base_of_openapi_error():
    assert issubclass(OpenAPIError, SchemaError)
