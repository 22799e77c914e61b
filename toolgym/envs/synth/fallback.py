"""``FallbackSynthesizer``: agents and tasks from the schemas alone, deterministic from the seed.

Tools are grouped by the entity they work on (``create_note``, ``get_note`` -> ``note``); each
group becomes an agent. A task picks one of the agent's tools and builds a concrete request
around it: create an entity with generated fields, read a field of an entity placed in the
task's initial state, change one, delete one, list them, or call a plain function. Each task
carries its gold action, a rubric, and, where the answer is known, expected outputs, so it
runs as is in ``SimulatedToolEnv`` with ``SchemaSimulator``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import canonical_json
from toolgym.envs.sim.generate import ValueGenerator
from toolgym.envs.sim.spec import CompiledTool, SimTool, compile_tool
from toolgym.envs.synth.models import AgentSpec, rubric_items
from toolgym.envs.types import Expected, GoldAction, JsonDict, Task, ToolSpec

Plan = tuple[str, list[GoldAction], list[JsonDict], JsonDict, list[str]]
"""instruction, gold actions, rubric, initial entities, expected outputs."""


AnyTool = CompiledTool | SimTool | ToolSpec | dict[str, Any]


def compile_all(tools: Sequence[AnyTool]) -> list[CompiledTool]:
    """Every tool compiled (schemas checked once, semantics inferred; compiled ones kept)."""
    return [t if isinstance(t, CompiledTool) else compile_tool(SimTool.coerce(t)) for t in tools]


class FallbackSynthesizer:
    """Seeded agent and task generation without a model.

    Args:
        seed: Same seed and tools, same agents and tasks.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def agents(self, tools: Sequence[AnyTool], n: int | None = None) -> list[AgentSpec]:
        """One agent per entity (sorted by entity), at most ``n``; a generalist if groups are fewer."""
        groups: dict[str, list[CompiledTool]] = {}
        for c in compile_all(tools):
            groups.setdefault(c.entity, []).append(c)
        agents = [_agent(entity, group) for entity, group in sorted(groups.items())]
        if n is not None and len(agents) < n and len(agents) > 1:
            names = [c.name for group in groups.values() for c in group]
            agents.append(AgentSpec(name="generalist", system_prompt=_prompt("every part of the API", names), tools=names))
        return agents[:n] if n is not None else agents

    def tasks(self, tools: Sequence[AnyTool], n: int, agents: Sequence[AgentSpec] | None = None) -> list[Task]:
        """``n`` tasks, spread over ``agents`` (default: ``self.agents(tools)``) in turn."""
        compiled = {c.name: c for c in compile_all(tools)}
        agents = list(agents) if agents is not None else self.agents(list(compiled.values()))
        return [self.task(compiled, agents[i % len(agents)], i) for i in range(n)]

    def task(self, compiled: dict[str, CompiledTool], agent: AgentSpec, index: int) -> Task:
        """Task number ``index`` for ``agent``."""
        rng = random.Random(seed_from(self.seed, agent.name, index))
        tool = compiled[rng.choice(sorted(agent.tools))]
        instruction, gold, rubric, entities, outputs = _PLANS[tool.kind](tool, rng)
        return Task(
            id=f"synth-{self.seed}-{agent.name}-{index}",
            instruction=instruction,
            system_prompt=agent.system_prompt,
            tools=list(agent.tools),
            initial_state={"entities": entities} if entities else {},
            gold_actions=gold,
            gold_answer=" ".join(["Done.", *outputs]),
            expected=Expected(outputs=outputs),
            metadata={"agent": agent.name, "rubric": rubric,
                      "synth": {"source": "fallback", "seed": self.seed}},
        )


def _agent(entity: str, group: list[CompiledTool]) -> AgentSpec:
    names = [c.name for c in group]
    return AgentSpec(name=f"{entity}_agent"[:64].replace(".", "_"), system_prompt=_prompt(f"{entity.replace('_', ' ')} records", names), tools=names)


def _prompt(scope: str, names: list[str]) -> str:
    return (f"You are an assistant that manages {scope} through an API ({', '.join(names)}). "
            "Use the tools to do exactly what the user asks, then confirm what you did in one or two sentences.")


def _arguments(tool: CompiledTool, rng: random.Random, fixed: JsonDict | None = None) -> JsonDict:
    """Schema-valid arguments (required ones always), with ``fixed`` entries imposed."""
    args = ValueGenerator(tool.params).generate(rng)
    return {**(args if isinstance(args, dict) else {}), **(fixed or {})}


def _seeded_entity(tool: CompiledTool, rng: random.Random) -> tuple[Any, JsonDict]:
    """An entity for the task's initial state: an id that fits the id argument, and a record."""
    id_schema = tool.params.get("properties", {}).get(tool.id_arg, {})
    ident: Any = _int_id(id_schema, rng) if id_schema.get("type") == "integer" else f"{tool.entity[:3]}_{rng.getrandbits(24):06x}"
    record = tool.generator.generate(rng) if tool.returns.get("type") == "object" else {}
    return ident, {**(record if isinstance(record, dict) else {}), tool.id_field or "id": ident}


def _int_id(schema: JsonDict, rng: random.Random) -> int:
    """An integer id inside the id argument's bounds (an id of 784 for ``maximum: 99`` is refused)."""
    low = int(schema.get("minimum", 1)) if isinstance(schema.get("minimum"), (int, float)) else 1
    high = int(schema.get("maximum", 999)) if isinstance(schema.get("maximum"), (int, float)) else 999
    return rng.randint(low, max(low, min(high, low + 998)))


def _rubric(*criteria: str) -> list[JsonDict]:
    return rubric_items(*criteria)


def _described(args: JsonDict) -> str:
    return ", ".join(f"{k} {canonical_json(v)}" for k, v in args.items()) or "no particular details"


def _plan_create(tool: CompiledTool, rng: random.Random) -> Plan:
    args = _arguments(tool, rng)
    noun = tool.entity.replace("_", " ")
    return (f"Please create a new {noun} with {_described(args)}. Tell me its id.",
            [GoldAction(name=tool.name, arguments=args)],
            _rubric(f"calls {tool.name} once with {canonical_json(args)}", f"the final answer reports the id of the new {noun}"),
            {}, [])


def _plan_read(tool: CompiledTool, rng: random.Random) -> Plan:
    ident, record = _seeded_entity(tool, rng)
    fields = sorted(k for k, v in record.items() if k != (tool.id_field or "id") and isinstance(v, (str, int, float)) and not isinstance(v, bool))
    noun = tool.entity.replace("_", " ")
    field = rng.choice(fields) if fields else None
    ask = f"What is the {field} of {noun} {ident}?" if field else f"Look up {noun} {ident} and summarize it."
    outputs = [str(record[field])] if field else []
    return (ask, [GoldAction(name=tool.name, arguments={tool.id_arg: ident})],
            _rubric(f"calls {tool.name} with {tool.id_arg}={canonical_json(ident)}", "the answer states what the tool returned, without inventing values"),
            {tool.entity: {str(ident): record}}, outputs)


def _plan_update(tool: CompiledTool, rng: random.Random) -> Plan:
    ident, record = _seeded_entity(tool, rng)
    args = _arguments(tool, rng, {tool.id_arg: ident})  # type: ignore[dict-item]  # update plans only exist for tools with an id argument
    changes = {k: v for k, v in args.items() if k != tool.id_arg}
    noun = tool.entity.replace("_", " ")
    return (f"Please update {noun} {ident}: set {_described(changes)}.", [GoldAction(name=tool.name, arguments=args)],
            _rubric(f"calls {tool.name} on {noun} {canonical_json(ident)} with {canonical_json(changes)}", "no other record is changed", "the answer confirms the change"),
            {tool.entity: {str(ident): record}}, [])


def _plan_delete(tool: CompiledTool, rng: random.Random) -> Plan:
    ident, record = _seeded_entity(tool, rng)
    noun = tool.entity.replace("_", " ")
    return (f"Please remove {noun} {ident}.", [GoldAction(name=tool.name, arguments={tool.id_arg: ident})],
            _rubric(f"calls {tool.name} with {tool.id_arg}={canonical_json(ident)}", "no other record is removed", "the answer confirms the removal"),
            {tool.entity: {str(ident): record}}, [])


def _plan_list(tool: CompiledTool, rng: random.Random) -> Plan:
    noun = tool.entity.replace("_", " ")
    ids = [f"{tool.entity[:3]}_{rng.getrandbits(24):06x}" for _ in range(2)]
    item = _list_item(tool)
    # Records shaped like the list's items, so the listed output fits the tool's return schema.
    records = {i: tool.generator.generate(rng, item) if item is not None and item.get("type") == "object" else {} for i in ids}
    entities = {tool.entity: {i: {**(r if isinstance(r, dict) else {}), "id": i} for i, r in records.items()}}
    args = {k: v for k, v in _arguments(tool, rng).items() if k in tool.params.get("required", [])}
    return (f"Which {noun} records are there? Give me their ids.", [GoldAction(name=tool.name, arguments=args)],
            _rubric(f"calls {tool.name}", f"the answer lists the ids of all {noun} records"),
            entities, ids if _lists_ids(tool) else [])


def _lists_ids(tool: CompiledTool) -> bool:
    """Whether the list tool's output shows each record's ``id`` (so the answer can name them)."""
    item = _list_item(tool)
    return item is not None and (not item.get("properties") or "id" in item["properties"])


def _list_item(tool: CompiledTool) -> JsonDict | None:
    """The schema of one listed record (resolved), or None when the output has no list."""
    schema = tool.returns
    if schema.get("type") == "array":
        item = schema.get("items")
    else:
        arrays = [p for p in schema.get("properties", {}).values() if isinstance(p, dict) and p.get("type") == "array"]
        item = arrays[0].get("items") if arrays else None
    return tool.generator.resolve(item) if isinstance(item, dict) else None


def _plan_call(tool: CompiledTool, rng: random.Random) -> Plan:
    args = _arguments(tool, rng)
    what = tool.tool.spec.function.description.rstrip(".") or f"Use {tool.name}"
    return (f"{what}, for {_described(args)}. What is the result?", [GoldAction(name=tool.name, arguments=args)],
            _rubric(f"calls {tool.name} with {canonical_json(args)}", "the answer reports the result the tool returned"),
            {}, [])


_PLANS: dict[str, Callable[[CompiledTool, random.Random], Plan]] = {
    "create": _plan_create, "read": _plan_read, "update": _plan_update,
    "delete": _plan_delete, "list": _plan_list, "call": _plan_call,
}
