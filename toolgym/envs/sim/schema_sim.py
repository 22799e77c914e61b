"""``SchemaSimulator``: plays an API from its schemas alone, deterministically from the seed.

Outputs are generated to fit the return schema, and the simulated world remembers what was
written: ``create_note`` stores a record under a fresh id, ``get_note(id)`` returns that record
(fields it lacks are generated once and kept), ``update_note`` changes it, ``delete_note``
removes it, ``list_notes`` returns the stored records, and any other call answers the same
arguments with the same output. Every random draw comes from a generator seeded by
(state seed, tool, arguments, call index), so the same seed and calls give the same episode.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from toolgym.aio import run_sync
from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import canonical_json, digest
from toolgym.envs.sim.base import SimulatorError
from toolgym.envs.sim.schema import problems
from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.sim.state import SimState
from toolgym.envs.types import JsonDict

SEARCH_ARGS = ("query", "q", "text", "search", "keyword", "term")
LIMIT_ARGS = ("limit", "max_results", "page_size", "top_k", "n", "count")
DONE_FLAGS = ("deleted", "success", "ok", "cancelled", "removed")


def clone(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars), several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


class SchemaSimulator:
    """Deterministic, schema-valid, stateful simulation of tools known only by schema.

    Args:
        open_world: Reads of unknown ids invent (and remember) the entity instead of failing
            with a "not found" error for the agent.
        attempts: Generation attempts before an output that breaks the schema is a
            ``SimulatorError`` (only ambiguous ``oneOf`` schemas ever need more than one).
    """

    is_async = False

    def __init__(self, *, open_world: bool = False, attempts: int = 5):
        self.open_world = open_world
        self.attempts = attempts
        self._handlers: dict[str, Callable[[CompiledTool, JsonDict, SimState, random.Random], Any]] = {
            "create": self._create, "read": self._read, "update": self._update,
            "delete": self._delete, "list": self._list, "call": self._call,
        }

    def simulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """``asimulate`` from sync code (it never waits, so no event loop is involved)."""
        return run_sync(self.asimulate(tool, arguments, state))

    async def asimulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """The tool's output; entity tools update ``state.entities``. See the module docstring."""
        rng = random.Random(seed_from(state.seed, tool.name, arguments, len(state.log)))
        # Work on a scratch copy so that a failed call (API error or broken output) changes nothing.
        # Only the tool's own collection is ever changed in place; memo entries are only added.
        entities = {**state.entities, tool.entity: clone(state.entities.get(tool.entity, {}))}
        scratch = SimState.model_construct(seed=state.seed, entities=entities, memo=dict(state.memo), data=state.data, log=[])
        output = self._handlers[tool.kind](tool, clone(arguments), scratch, rng)
        bad = problems(tool.returns_validator, output)
        if bad:
            raise SimulatorError(f"simulated output of {tool.name!r} breaks its return schema: " + "; ".join(bad))
        state.entities, state.memo = scratch.entities, scratch.memo
        return clone(output)

    # ------------------------------------------------------------------ kinds

    def _create(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        records = state.entities.setdefault(tool.entity, {})
        output = self._generate(tool, rng)
        new_id = self._new_id(tool, records, rng)
        if isinstance(output, dict) and not tool.returns.get("properties") and tool.returns.get("additionalProperties") is not False:
            output = record = {**args, "id": new_id}  # a free-form object: the new record itself
        elif isinstance(output, dict):
            output = {**output, **self._fitting(tool, tool.returns, args)}
            if tool.id_field is not None:
                output[tool.id_field] = new_id
            record = {**args, **output, tool.id_field or "id": new_id}
        else:  # a bare return value is the new id when it can be
            output = new_id if tool.returns_validator.is_valid(new_id) else output
            record = {**args, "id": new_id}
        records[str(new_id)] = record
        return output

    def _read(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        record = self._lookup(tool, args, state, rng)
        if not _is_object_schema(tool.returns):
            return self._call(tool, args, state, rng)
        return self._project(tool, tool.returns, record, rng)

    def _update(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        record = self._lookup(tool, args, state, rng)
        record.update({k: v for k, v in args.items() if k != tool.id_arg})
        if _is_object_schema(tool.returns):
            return self._project(tool, tool.returns, record, rng)
        return True if tool.returns.get("type") == "boolean" else self._generate(tool, rng)

    def _delete(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        key = str(args[tool.id_arg])  # type: ignore[index]  # id tools always have id_arg (compile_tool)
        records = state.entities.setdefault(tool.entity, {})
        if key not in records and not self.open_world:
            raise LookupError(_not_found(tool, key, records))
        records.pop(key, None)
        if tool.returns.get("type") == "boolean":
            return True
        output = self._generate(tool, rng)
        if isinstance(output, dict):
            props = tool.returns.get("properties", {})
            done = {flag: True for flag in DONE_FLAGS if flag in props}
            ident = {tool.id_field: args[tool.id_arg]} if tool.id_field else {}  # type: ignore[index]  # id tools always have id_arg (compile_tool)
            output.update(self._fitting(tool, tool.returns, {**done, **ident}))
        return output

    def _list(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        records = list(state.entities.get(tool.entity, {}).values())
        records = _filter(records, args)
        schema = tool.returns
        if schema.get("type") == "array":
            return self._items(tool, schema, records, rng)
        key = _array_property(schema)
        if key is None:  # no list in the schema to put the records in
            return self._call(tool, args, state, rng)
        output = self._generate(tool, rng)
        output[key] = self._items(tool, schema["properties"][key], records, rng)
        for name in ("total", "count", "total_count"):
            if name in output and isinstance(output[name], int) and not isinstance(output[name], bool):
                output[name] = len(output[key])
        return output

    def _call(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> Any:
        key = f"{tool.name}:{digest(args)}"
        if key not in state.memo:
            state.memo[key] = self._generate(tool, rng)
        return state.memo[key]

    # ------------------------------------------------------------------ helpers

    def _generate(self, tool: CompiledTool, rng: random.Random, schema: Any = None) -> Any:
        """A value for ``schema`` (default: the return schema), retried until it validates."""
        validator = tool.returns_validator if schema is None else tool.returns_validator.evolve(schema=schema)
        value = None
        for _ in range(self.attempts):
            try:
                value = tool.generator.generate(rng, schema)
                if validator.is_valid(value):
                    return value
            except SimulatorError:
                raise
            except Exception as exc:  # the schema's fault, never the agent's: a simulator_error
                raise SimulatorError(f"could not generate an output for {tool.name!r}: {type(exc).__name__}: {str(exc)[:200]}") from None
        bad = "; ".join(problems(validator, value))
        raise SimulatorError(f"could not generate a valid output for {tool.name!r} in {self.attempts} attempts: {bad}")

    def _new_id(self, tool: CompiledTool, records: dict[str, JsonDict], rng: random.Random) -> Any:
        schema = tool.returns.get("properties", {}).get(tool.id_field, {"type": "string"}) if tool.id_field else {"type": "string"}
        if schema.get("type") == "integer":
            return max((int(k) for k in records if k.lstrip("-").isdigit()), default=0) + 1
        for _ in range(64):
            if set(schema) <= {"type", "description", "title"}:
                value: Any = f"{tool.entity[:3]}_{rng.getrandbits(32):08x}"
            else:
                value = self._generate(tool, rng, schema)
            if str(value) not in records:
                return value
        raise SimulatorError(f"{tool.name!r}: the id schema {schema} ran out of fresh ids")

    def _lookup(self, tool: CompiledTool, args: JsonDict, state: SimState, rng: random.Random) -> JsonDict:
        key = str(args[tool.id_arg])  # type: ignore[index]  # id tools always have id_arg (compile_tool)
        records = state.entities.setdefault(tool.entity, {})
        if key not in records:
            if not self.open_world:
                raise LookupError(_not_found(tool, key, records))
            records[key] = {tool.id_field or "id": args[tool.id_arg]}  # type: ignore[index]  # id tools always have id_arg (compile_tool)
        return records[key]

    def _fitting(self, tool: CompiledTool, schema: JsonDict, values: JsonDict) -> JsonDict:
        """The entries of ``values`` that are properties of ``schema`` and fit their schemas."""
        props = schema.get("properties", {})
        check = tool.returns_validator.evolve
        return {k: v for k, v in values.items() if k in props and check(schema=props[k]).is_valid(v)}

    def _project(self, tool: CompiledTool, schema: JsonDict, record: JsonDict, rng: random.Random) -> JsonDict:
        """``record`` shaped by an object schema; required fields it lacks are generated and kept."""
        schema = tool.generator.resolve(schema)
        props = schema.get("properties")
        if not props:
            return dict(record)
        out = self._fitting(tool, schema, record)
        for name in schema.get("required", []):
            if name not in out:
                value = self._generate(tool, rng, props.get(name, {}))
                record[name] = out[name] = value
        return out

    def _items(self, tool: CompiledTool, array_schema: JsonDict, records: list[JsonDict], rng: random.Random) -> list[Any]:
        item_schema = tool.generator.resolve(array_schema.get("items", {}))
        cap = array_schema.get("maxItems")
        chosen = records[: int(cap)] if cap is not None else records
        if _is_object_schema(item_schema):
            return [self._project(tool, item_schema, r, rng) for r in chosen]
        return [r.get("id", r) for r in chosen]


def _is_object_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "object" or ("properties" in schema and "type" not in schema))


def _array_property(schema: JsonDict) -> str | None:
    for name, sub in schema.get("properties", {}).items():
        if isinstance(sub, dict) and sub.get("type") == "array":
            return name
    return None


def _filter(records: list[JsonDict], args: JsonDict) -> list[JsonDict]:
    """Records matching equal-valued fields and any free-text query, cut to any limit."""
    limit = next((args[k] for k in LIMIT_ARGS if isinstance(args.get(k), int)), None)
    for key, value in args.items():
        if key in SEARCH_ARGS and isinstance(value, str):
            records = [r for r in records if value.lower() in canonical_json(r).lower()]
        elif key not in LIMIT_ARGS and any(key in r for r in records):
            records = [r for r in records if r.get(key) == value]
    return records[:limit] if limit is not None and limit >= 0 else records


def _not_found(tool: CompiledTool, key: str, records: dict[str, JsonDict]) -> str:
    known = ", ".join(sorted(records)[:5]) or f"there are no {tool.entity} records yet"
    return f"no {tool.entity} with {tool.id_arg} {key!r} (known: {known})"
