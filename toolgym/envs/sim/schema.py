"""Compiling and checking JSON Schemas: tool parameters, simulated return values.

Schemas come from outside (OpenAI specs, MCP servers, synthesized tools), so they are checked
once, when an environment is built, and a broken one is a ``SchemaError`` naming the tool, the
place in the schema and the fix. Values are then checked against the compiled validator; a
problem list (not an exception) lets callers decide whose fault a mismatch is.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError as _JsonSchemaError
from jsonschema.validators import validator_for

from toolgym.envs.sim.limits import UnusableSchema, check_schema_shape, guarded
from toolgym.errors import ConfigError

JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


class SchemaError(ConfigError):
    """A JSON Schema given for a tool does not compile or is not of the expected form."""


def _path(parts: Any) -> str:
    text = ".".join(str(p) for p in parts)
    return text or "(root)"


def compile_schema(schema: Any, *, where: str, require_object: bool = False) -> jsonschema.protocols.Validator:
    """Check ``schema`` and return a validator for it.

    Args:
        schema: A JSON Schema (a dict; ``True`` accepts anything).
        where: What the schema describes, for messages (for example "parameters of 'get_order'").
        require_object: The schema must describe a JSON object (tool arguments must).

    Raises:
        SchemaError: the schema is not a dict, has a bad ``type``, or breaks the metaschema.
    """
    if schema is True or schema == {}:
        schema = {}
    elif not isinstance(schema, dict):
        raise SchemaError(f"{where}: a JSON Schema must be an object (dict), got {type(schema).__name__} {schema!r:.60}")
    check_schema_shape(schema, where)
    _check_types(schema, where, [])
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except _JsonSchemaError as exc:
        raise SchemaError(f"{where}: invalid JSON Schema at '{_path(exc.path)}': {exc.message}") from None
    cls = guarded(cls)
    if require_object and schema.get("type") != "object":
        got = schema.get("type", "no 'type'")
        raise SchemaError(
            f"{where}: tool arguments must be an object schema ({{\"type\": \"object\", \"properties\": {{...}}}}), got type {got!r}"
        )
    return cls(schema)


def _check_types(schema: Any, where: str, path: list[str]) -> None:
    """Name a misspelt ``type`` before the metaschema's generic message does."""
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            _check_types(sub, where, [*path, str(i)])
        return
    if not isinstance(schema, dict):
        return
    declared = schema.get("type")
    for name in declared if isinstance(declared, list) else [declared]:
        if name is not None and name not in JSON_TYPES:
            hint = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "object", "list": "array"}.get(str(name))
            fix = f"; did you mean {hint!r}?" if hint else f"; use one of {', '.join(JSON_TYPES)}"
            raise SchemaError(f"{where}: unknown type {name!r} at '{_path([*path, 'type'])}'{fix}")
    for key, sub in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(sub, dict):
            for name, child in sub.items():
                _check_types(child, where, [*path, key, name])
        elif key in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf", "prefixItems"):
            _check_types(sub, where, [*path, key])


def problems(validator: jsonschema.protocols.Validator, value: Any, limit: int = 3) -> list[str]:
    """Why ``value`` breaks the schema, one line per problem (empty when it fits)."""
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: (len(e.path), _path(e.path)))
    except UnusableSchema as exc:  # a pattern too slow to apply: the value cannot be accepted
        return [str(exc)]
    return [f"at '{_path(e.path)}': {e.message}" for e in errors[:limit]]
