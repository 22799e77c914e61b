"""Tools known only by schema: ``SimTool`` (a spec plus an optional return schema) and its
compiled form, with what the simulators infer from the name (verb, entity, id fields).

``create_note`` is a *create* on the entity ``note``; ``get_note(note_id)`` a *read* of one;
``list_notes`` a *list*. The inference is a convention over names, so it is visible in
``CompiledTool.kind`` and can be overridden with ``SimTool.kind``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from toolgym.envs.sim.generate import ValueGenerator, check_generable
from toolgym.envs.sim.schema import SchemaError, compile_schema
from toolgym.envs.types import JsonDict, ToolSpec

ToolKind = Literal["create", "read", "update", "delete", "list", "call"]

VERBS: dict[str, ToolKind] = {
    **dict.fromkeys(("create", "add", "new", "insert", "register", "book", "post", "make", "submit", "place", "open"), "create"),
    **dict.fromkeys(("get", "read", "fetch", "show", "describe", "lookup", "view", "retrieve", "load"), "read"),
    **dict.fromkeys(("update", "set", "edit", "modify", "patch", "rename", "change", "assign", "put"), "update"),
    **dict.fromkeys(("delete", "remove", "cancel", "archive", "drop", "destroy", "close"), "delete"),
    **dict.fromkeys(("list", "search", "find", "query", "browse", "filter"), "list"),
}


class SimTool(BaseModel):
    """A tool as the simulators see it.

    Example:
        >>> SimTool.coerce({"type": "function", "function": {"name": "get_time"}, "returns": {"type": "string"}}).returns
        {'type': 'string'}
    """

    model_config = ConfigDict(extra="forbid")

    spec: ToolSpec
    returns: JsonDict | None = None
    """JSON Schema of the output (None: a default that fits the tool's kind)."""
    kind: ToolKind | None = None
    """Overrides the kind inferred from the name."""

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def coerce(cls, value: Any) -> SimTool:
        """Accept a ``SimTool``, a ``ToolSpec``, or an OpenAI tool dict with an optional ``returns``."""
        if isinstance(value, SimTool):
            return value
        if isinstance(value, ToolSpec):
            return cls(spec=value)
        if not isinstance(value, dict):
            raise SchemaError(f"a simulated tool must be a SimTool, ToolSpec or dict, got {type(value).__name__}")
        try:
            if "spec" in value:
                return cls.model_validate(value)
            extra = {k: value[k] for k in ("returns", "kind") if k in value}
            spec = ToolSpec.model_validate({k: v for k, v in value.items() if k not in extra})
            return cls(spec=spec, **extra)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SchemaError(f"tool spec {str(value)[:80]!r}: field '{where}': {first['msg']}") from None


@dataclass(frozen=True)
class CompiledTool:
    """A checked ``SimTool`` with validators, a value generator and the inferred semantics."""

    tool: SimTool
    kind: ToolKind
    entity: str
    """Entity collection the tool works on ("note" for create_note, get_note, list_notes)."""
    id_arg: str | None
    """The argument that names one entity (None: the tool does not address an entity)."""
    id_field: str | None
    """The output property that carries the entity id."""
    returns: JsonDict
    params_validator: Any
    returns_validator: Any
    generator: ValueGenerator

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def params(self) -> JsonDict:
        return self.tool.spec.function.parameters


def split_name(name: str) -> list[str]:
    """``createOrderItem`` and ``create_order-item`` both give ``['create', 'order', 'item']``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return [w.lower() for w in re.split(r"[_.\-\s]+", snake) if w]


def singular(word: str) -> str:
    """A cheap singular: notes -> note, addresses -> address, categories -> category."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _id_candidates(entity: str) -> list[str]:
    last = entity.split("_")[-1]
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), entity)
    return ["id", f"{entity}_id", f"{camel}Id", f"{last}_id", f"{last}Id"]


def _find(names: Any, candidates: list[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _default_returns(kind: ToolKind, params: JsonDict, id_schema: JsonDict) -> JsonDict:
    props = params.get("properties", {})
    if kind == "create":
        return {"type": "object", "properties": {"id": id_schema, **props}, "required": ["id"]}
    if kind in ("read", "update"):
        return {"type": "object"}  # no declared fields: the stored record is returned whole
    if kind == "delete":
        return {"type": "object", "properties": {"id": id_schema, "deleted": {"type": "boolean"}}, "required": ["id", "deleted"]}
    if kind == "list":
        return {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}, "required": ["items"]}
    return {"type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}


def compile_tool(tool: SimTool) -> CompiledTool:
    """Check a tool's schemas and infer its semantics.

    Raises:
        SchemaError: the parameters are not an object schema, a schema does not compile, or
            the return schema uses keywords the schema simulator cannot generate.
    """
    name = tool.name
    params = tool.spec.function.parameters
    params_validator = compile_schema(params, where=f"parameters of {name!r}", require_object=True)
    words = split_name(name)
    kind: ToolKind = tool.kind or VERBS.get(words[0] if words else "", "call")
    entity = "_".join([*words[1:-1], singular(words[-1])]) if len(words) > 1 else name
    id_arg = _find(params.get("properties", {}), _id_candidates(entity)) if kind != "create" else None
    if kind in ("read", "update", "delete") and id_arg is None:
        kind = "call"  # nothing names an entity: answer like a pure function of the arguments
    id_schema = params.get("properties", {}).get(id_arg, {"type": "string"}) if id_arg else {"type": "string"}
    returns = tool.returns if tool.returns is not None else _default_returns(kind, params, id_schema)
    where = f"return schema of {name!r}"
    returns_validator = compile_schema(returns, where=where)
    check_generable(returns, where=where)
    generator = ValueGenerator(returns)
    _try_generate(generator, where)
    id_field = _find(returns.get("properties", {}), _id_candidates(entity)) if isinstance(returns, dict) else None
    return CompiledTool(
        tool=tool, kind=kind, entity=entity, id_arg=id_arg, id_field=id_field, returns=returns,
        params_validator=params_validator, returns_validator=returns_validator, generator=generator,
    )


def _try_generate(generator: ValueGenerator, where: str) -> None:
    """Refuse, at import, a return schema no value can be generated for in bounded time."""
    for seed in range(3):
        try:
            generator.generate(random.Random(seed))
        except SchemaError as exc:
            raise SchemaError(f"{where}: no value can be generated: {exc}") from None
        except Exception as exc:  # overflow, recursion...: the schema is unusable, say which and why
            raise SchemaError(f"{where}: no value can be generated ({type(exc).__name__}: {str(exc)[:200]})") from None
