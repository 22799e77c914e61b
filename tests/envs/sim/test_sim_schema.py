"""Schemas: broken ones are refused with teaching messages; generated values always fit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import spec

from toolgym.envs.sim import SchemaError, SimTool, SimulatedToolEnv, compile_schema, compile_tool
from toolgym.envs.sim.generate import ValueGenerator, check_generable


@pytest.mark.parametrize(
    "schema, require_object, message",
    [
        ("not a schema", False, "must be an object"),
        ({"type": "str"}, False, "did you mean 'string'"),
        ({"type": "object", "properties": {"n": {"type": "int"}}}, False, "at 'properties.n.type'.*did you mean 'integer'"),
        ({"type": "strnig"}, False, "unknown type 'strnig'.*use one of"),
        ({"type": "object", "required": "x"}, False, "invalid JSON Schema at 'required'"),
        ({"type": "array", "items": {"type": "string"}}, True, "must be an object schema.*got type 'array'"),
    ],
)
def test_broken_schemas_are_refused_with_the_place_and_fix(schema, require_object, message):
    with pytest.raises(SchemaError, match=message):
        compile_schema(schema, where="parameters of 'x'", require_object=require_object)


def test_unsupported_keyword_names_the_node_and_the_way_out():
    with pytest.raises(SchemaError, match=r"'pattern' at '\(root\).properties.code'.*add 'examples'"):
        check_generable({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}, where="x")
    check_generable({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["ABC"]}, where="x")  # examples make it fine


def test_env_refuses_a_tool_whose_schema_does_not_compile():
    bad = spec("get_thing", {"id": {"type": "str"}}, ["id"])
    with pytest.raises(SchemaError, match="parameters of 'get_thing'.*did you mean 'string'"):
        SimulatedToolEnv([bad])
    with pytest.raises(SchemaError, match="return schema of 'get_thing'"):
        SimulatedToolEnv([spec("get_thing", {"id": {"type": "string"}}, ["id"], returns={"type": "bogus"})])


def test_tool_dicts_are_coerced_and_bad_ones_named():
    tool = SimTool.coerce(spec("list_orders", {}, returns={"type": "array"}))
    assert tool.returns == {"type": "array"} and tool.name == "list_orders"
    with pytest.raises(SchemaError, match="field 'function.name'"):
        SimTool.coerce({"type": "function", "function": {"name": "has space"}})


@pytest.mark.parametrize(
    "name, kind, entity, id_arg",
    [("create_note", "create", "note", None), ("getNote", "read", "note", "note_id"), ("list_notes", "list", "note", None),
     ("delete_note", "delete", "note", "note_id"), ("get_weather", "call", "weather", None), ("ping", "call", "ping", None)],
)
def test_semantics_are_inferred_from_names(name, kind, entity, id_arg):
    params = {"note_id": {"type": "string"}} if "note" in name.lower() and kind in ("read", "delete") else {"city": {"type": "string"}}
    compiled = compile_tool(SimTool.coerce(spec(name, params)))
    assert (compiled.kind, compiled.entity, compiled.id_arg) == (kind, entity, id_arg)


# ------------------------------------------------------------------ generation (property-based)

names = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)
scalars = st.one_of(
    st.just({"type": "string"}),
    st.builds(lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span}, st.integers(0, 6), st.integers(0, 10)),
    st.sampled_from([{"type": "string", "format": f} for f in ("date-time", "date", "email", "uuid", "uri", "ipv4")]),
    st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span}, st.integers(-1000, 1000), st.integers(0, 50)),
    st.builds(lambda lo: {"type": "integer", "exclusiveMinimum": lo}, st.integers(-10, 10)),
    st.builds(lambda m: {"type": "integer", "multipleOf": m, "minimum": 0, "maximum": 100}, st.integers(1, 10)),
    st.builds(lambda lo, span: {"type": "number", "minimum": lo, "exclusiveMaximum": lo + span},
              st.floats(-1e3, 1e3, allow_nan=False), st.floats(0.001, 50)),
    st.builds(lambda m: {"type": "number", "multipleOf": m, "maximum": 10}, st.sampled_from([0.1, 0.25, 0.5, 3])),
    st.just({"type": "boolean"}), st.just({"type": "null"}), st.just({"type": ["string", "null"]}),
    st.builds(lambda values: {"enum": values}, st.lists(st.one_of(st.integers(), st.text(max_size=4)), min_size=1, max_size=4, unique=True)),
)
schemas = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda props, mask: {"type": "object", "properties": props, "required": [k for k, m in zip(props, mask, strict=False) if m]},
                  st.dictionaries(names, inner, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4)),
        st.builds(lambda item, lo: {"type": "array", "items": item, "minItems": lo, "maxItems": lo + 3}, inner, st.integers(0, 2)),
        st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner),
    ),
    max_leaves=10,
)
schemas = st.one_of(schemas, schemas.map(lambda s: {"$defs": {"node": s}, "$ref": "#/$defs/node"}))


@settings(max_examples=150, deadline=None)
@given(schemas, st.integers(0, 2**32))
def test_generated_values_fit_their_schema_and_repeat_with_the_seed(schema, seed):
    validator = compile_schema(schema, where="hypothesis")
    check_generable(schema, where="hypothesis")
    gen = ValueGenerator(schema)
    value = gen.generate(random.Random(seed))
    assert validator.is_valid(value), (schema, value, [e.message for e in validator.iter_errors(value)])
    assert gen.generate(random.Random(seed)) == value


def test_unique_items_stop_when_distinct_values_run_out():
    schema = {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True, "minItems": 1, "maxItems": 6}
    for seed in range(30):
        value = ValueGenerator(schema).generate(random.Random(seed))
        assert len(value) == len(set(value)) >= 1
