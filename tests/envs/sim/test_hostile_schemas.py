"""Schemas from outside that would hang or be blamed on the agent: refused at import with a
named ``SchemaError``, or bounded at runtime and attributed to the simulator."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.sim import SimulatedToolEnv
from toolgym.envs.sim.schema import SchemaError


def spec(params=None, returns=None):
    d = {"type": "function", "function": {"name": "get_thing", "description": "Get a thing.",
         "parameters": params or {"type": "object", "properties": {"q": {"type": "string"}}}}}
    if returns is not None:
        d["returns"] = returns
    return d


def nested(depth: int, leaf=None):
    schema = leaf or {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


HOSTILE_RETURNS = st.one_of(
    st.integers(10**4, 10**9).map(lambda n: ({"type": "array", "minItems": n, "items": {"type": "integer"}}, "minItems")),
    st.integers(10**6, 10**9).map(lambda n: ({"type": "string", "minLength": n}, "minLength")),
    st.floats(1e-300, 1e-10).map(lambda m: ({"type": "number", "multipleOf": m}, "multipleOf")),
    st.sampled_from(["maximum", "minimum", "exclusiveMaximum"]).map(lambda k: ({"type": "number", k: float("inf")}, k)),
    st.integers(65, 3000).map(lambda d: (nested(d), "nests deeper")),
    st.text(alphabet="abcdef", min_size=1, max_size=8).map(lambda n: ({"$ref": f"#/$defs/{n}"}, "points at nothing")),
    st.just(({"$ref": "https://example.com/s.json"}, "not local")),
    st.just(({"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}, "required": ["c"]}}, "$ref": "#/$defs/n"}, "refers back")),
    # Patterns that still backtrack in the timed engine (regex 2026.12 no longer backtracks on '^(a+)+$').
    st.sampled_from(["^(a|aa)+$", "^(\\w+\\s?)*$", "^(0|00)+$", "^(a|ab|b)*$", "^([a-z0-9]+)*$"]).map(
        lambda p: ({"type": "object", "properties": {"x": {"type": "string", "pattern": p, "examples": ["a"]}}}, "backtracks")),
)


@settings(max_examples=40, deadline=None)
@given(HOSTILE_RETURNS, st.booleans())
def test_unusable_schemas_are_refused_at_import_quickly_and_by_name(case, in_params):
    schema, words = case
    started = time.perf_counter()
    if in_params and isinstance(schema, dict) and schema.get("type") != "object":
        tool = spec(params={"type": "object", "properties": {"v": schema}})
        words = {"refers back": "", "minItems": "", "minLength": "", "multipleOf": ""}.get(words, words)  # harmless in parameters
    else:
        tool = spec(returns=schema)
    try:
        SimulatedToolEnv([tool])
    except SchemaError as exc:
        assert "get_thing" in str(exc) and words in str(exc)
    else:
        assert in_params and words == ""  # only sizes in *parameters* are acceptable: validation is cheap
    assert time.perf_counter() - started < 3.0


def test_a_slow_pattern_that_passed_import_is_a_simulator_error_not_the_agents(monkeypatch):
    from toolgym.envs.sim import limits

    monkeypatch.setattr(limits, "_PROBES", ())  # let the catastrophic pattern through import
    env = SimulatedToolEnv([spec(params={"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a|aa)+$"}}})])
    env.reset(seed=0)
    started = time.perf_counter()
    obs, _, _, _, info = env.step('<tool_call>{"name": "get_thing", "arguments": {"q": "' + "a" * 40 + '!"}}</tool_call>')
    assert time.perf_counter() - started < 2.0
    assert obs.messages[0].error == "simulator_error" and info["errors"] == {"simulator_error": 1}


@pytest.mark.parametrize("schema", [{"type": "array", "minItems": 3, "maxItems": 5, "items": {"type": "integer", "multipleOf": 0.5}},
                                    {"type": "string", "pattern": "^[a-z]{3}$", "examples": ["abc"]},
                                    {"$defs": {"n": {"type": "object", "properties": {"c": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}])
def test_ordinary_schemas_still_import(schema):
    SimulatedToolEnv([spec(returns=schema)]).reset(seed=0)
