"""The evolution operators: how a new tool is made from the taxonomy and the tools kept so far.

A job (``EvolveJob``) says which operator, on which domain and entity, from which parents; it
is drawn from the seed, the generation and the job's index only, so any shard of a generation
can be planned and run anywhere, in any order, and give the same jobs. The deterministic
``realize`` turns a job into an OpenAI tool dict; a policy may write it instead
(``toolgym.envs.synth.evolve.PolicyProposer``).

Operators:
- ``new_operation``: a verb not yet applied to an entity (``approve_clinic_booking``);
- ``new_parameter``: a parent tool with one more field, or a tighter constraint on one;
- ``neighbour_variant``: a parent tool moved to the matching entity of a neighbouring domain;
- ``composition``: two tools of one domain done in one call.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.canonical import seed_from
from toolgym.envs.sim.spec import split_name
from toolgym.envs.synth.records import Operator, ToolRecord
from toolgym.envs.synth.taxonomy import FIELD_POOL, Entity, Taxonomy
from toolgym.envs.types import JsonDict

EvolveOperator = Operator
VERB_KINDS: dict[str, str] = {
    "create": "create", "register": "create", "add": "create", "get": "read", "fetch": "read", "view": "read",
    "update": "update", "edit": "update", "assign": "update", "rename": "update", "delete": "delete", "archive": "delete",
    "cancel": "delete", "list": "list", "search": "list", "find": "list", "browse": "list",
    "approve": "call", "export": "call", "validate": "call", "summarize": "call", "share": "call", "duplicate": "call", "flag": "call",
}
"""Verbs of ``new_operation``, and the kind of tool each makes."""
DEFAULT_WEIGHTS: dict[str, float] = {"new_operation": 0.4, "new_parameter": 0.3, "neighbour_variant": 0.2, "composition": 0.1}
_RESULT = {"type": "object", "properties": {"ok": {"type": "boolean"}, "summary": {"type": "string", "maxLength": 200}}, "required": ["ok", "summary"]}


class EvolveJob(BaseModel):
    """One tool to make: the operator and its inputs."""

    model_config = ConfigDict(extra="forbid")

    key: str
    """``g<generation>-<index>``: names the item in caches and failure reports."""
    operator: Operator
    domain: str
    entity: str
    verb: str = ""
    """``new_operation``: the verb to apply."""
    field: str = ""
    """``new_parameter``: the field added or constrained."""
    target_domain: str = ""
    """``neighbour_variant``: the neighbouring domain."""
    target_entity: str = ""
    parents: list[str] = Field(default_factory=list)


def plan_jobs(taxonomy: Taxonomy, pool: Sequence[ToolRecord], generation: int, indices: range, *, seed: int = 0,
              weights: dict[str, float] | None = None) -> list[EvolveJob]:
    """The jobs ``indices`` of ``generation``: each from its own RNG, so shards plan independently."""
    weights = weights or DEFAULT_WEIGHTS
    by_domain: dict[str, list[ToolRecord]] = {}
    for r in pool:
        by_domain.setdefault(r.domain, []).append(r)
    return [_plan_one(taxonomy, pool, by_domain, generation, i, seed, weights) for i in indices]


def _plan_one(taxonomy: Taxonomy, pool: Sequence[ToolRecord], by_domain: dict[str, list[ToolRecord]], generation: int,
              index: int, seed: int, weights: dict[str, float]) -> EvolveJob:
    rng = random.Random(seed_from(seed, "evolve", generation, index))
    ops = sorted(weights)
    op = rng.choices(ops, weights=[weights[o] for o in ops])[0] if pool else "new_operation"
    key = f"g{generation}-{index}"
    if op == "new_operation":
        domain = rng.choice(taxonomy.domains)
        entity = rng.choice(domain.entities) if domain.entities else Entity(name=f"{domain.name}_record")
        return EvolveJob(key=key, operator="new_operation", domain=domain.name, entity=entity.name, verb=rng.choice(sorted(VERB_KINDS)))
    parent = pool[rng.randrange(len(pool))]
    base = {"key": key, "domain": parent.domain, "entity": parent.entity}
    if op == "new_parameter":
        return EvolveJob(**base, operator="new_parameter", field=rng.choice(sorted(FIELD_POOL)), parents=[parent.name])
    if op == "neighbour_variant":
        return _neighbour_job(taxonomy, parent, rng, base)
    mates = [r for r in by_domain.get(parent.domain, []) if r.name != parent.name]
    if not mates:
        return EvolveJob(**base, operator="new_parameter", field=rng.choice(sorted(FIELD_POOL)), parents=[parent.name])
    other = mates[rng.randrange(len(mates))]
    return EvolveJob(**base, operator="composition", parents=[parent.name, other.name])


def _neighbour_job(taxonomy: Taxonomy, parent: ToolRecord, rng: random.Random, base: dict[str, Any]) -> EvolveJob:
    known = {d.name for d in taxonomy.domains}
    domain = taxonomy.domain(parent.domain) if parent.domain in known else None
    neighbours = domain.neighbours if domain is not None and domain.neighbours else sorted(known - {parent.domain})
    if not neighbours:
        return EvolveJob(**base, operator="new_parameter", field=rng.choice(sorted(FIELD_POOL)), parents=[parent.name])
    target = taxonomy.domain(rng.choice(neighbours))
    noun = parent.entity.removeprefix(f"{parent.domain}_")
    same = [e for e in target.entities if e.name == f"{target.name}_{noun}"]
    entity = same[0] if same else (rng.choice(target.entities) if target.entities else Entity(name=f"{target.name}_{noun}"[:31]))
    return EvolveJob(**base, operator="neighbour_variant", target_domain=target.name, target_entity=entity.name, parents=[parent.name])


# ---------------------------------------------------------------------- realizing a job


def realize(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> tuple[JsonDict, str, str]:
    """The deterministic tool for ``job``: (OpenAI tool dict with ``returns``/``kind``, domain, entity)."""
    return _REALIZE[job.operator](job, taxonomy, parents)


def _entity_fields(taxonomy: Taxonomy, domain: str, entity: str) -> dict[str, JsonDict]:
    for d in taxonomy.domains:
        if d.name == domain:
            for e in d.entities:
                if e.name == entity and e.fields:
                    return e.fields
    return {"title": dict(FIELD_POOL["title"])}


def _tool(name: str, description: str, props: JsonDict, required: list[str], returns: JsonDict | None, kind: str | None) -> JsonDict:
    params: JsonDict = {"type": "object", "properties": props}
    if required:
        params["required"] = list(dict.fromkeys(required))
    out: JsonDict = {"type": "function", "function": {"name": name[:64], "description": description, "parameters": params}}
    if returns is not None:
        out["returns"] = returns
    if kind is not None:
        out["kind"] = kind
    return out


def _new_operation(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> tuple[JsonDict, str, str]:
    fields = _entity_fields(taxonomy, job.domain, job.entity)
    kind = VERB_KINDS[job.verb]
    noun = job.entity.replace("_", " ")
    id_key = f"{job.entity}_id"
    id_prop = {id_key: {"type": "string", "minLength": 1, "description": f"The {noun}'s id."}}
    names = sorted(fields)
    if kind == "create":
        props, required = copy.deepcopy(fields), names[:2]
    elif kind in ("read", "delete"):
        props, required = id_prop, [id_key]
    elif kind == "update":
        props, required = {**id_prop, **copy.deepcopy(fields)}, [id_key, names[0]]
    elif kind == "list":
        enums = {k: copy.deepcopy(v) for k, v in fields.items() if "enum" in v}
        props, required = {**enums, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}, []
    else:
        props, required = {**id_prop, "note": {"type": "string", "maxLength": 200}}, [id_key]
    name = f"{job.verb}_{job.entity}s" if kind == "list" else f"{job.verb}_{job.entity}"
    description = f"{job.verb.capitalize()} {'the ' + noun + ' records' if kind == 'list' else 'a ' + noun} in the {job.domain.replace('_', ' ')} system."
    return _tool(name, description, props, required, _RESULT if kind == "call" else None, kind), job.domain, job.entity


def _new_parameter(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> tuple[JsonDict, str, str]:
    parent = parents[job.parents[0]]
    spec = parent.tool.model_dump(mode="json", exclude_none=True)
    params = spec["spec"]["function"]["parameters"]
    props = params.setdefault("properties", {})
    field = job.field
    if field in props:  # the field is there already: tighten it instead
        props[field] = _tightened(props[field])
        suffix, what = f"{field}_checked", f"with a stricter {field}"
    else:
        props[field] = copy.deepcopy(FIELD_POOL[field])
        suffix, what = f"by_{field}" if parent.tool.kind == "list" or split_name(parent.name)[:1] in (["list"], ["search"], ["find"]) else f"with_{field}", f"taking a {field}"
    function = spec["spec"]["function"]
    function["name"] = f"{parent.name}_{suffix}"[:64]
    function["description"] = f"{function.get('description', '').rstrip('.')}, {what}."
    return {**spec["spec"], **{k: spec[k] for k in ("returns", "kind") if k in spec}}, parent.domain, parent.entity


def _tightened(schema: JsonDict) -> JsonDict:
    out = dict(schema)
    if out.get("type") == "string" and "enum" not in out:
        out["maxLength"] = min(int(out.get("maxLength", 200)), 40)
        out["minLength"] = max(int(out.get("minLength", 0)), 1)
    elif out.get("type") in ("integer", "number"):
        out["minimum"] = max(out.get("minimum", 0), 0)
        out["maximum"] = min(out.get("maximum", 1000), 1000)
    else:
        out["description"] = (str(out.get("description", "")) + " Required to be set explicitly.").strip()
    return out


def _neighbour_variant(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> tuple[JsonDict, str, str]:
    parent = parents[job.parents[0]]
    old, new = parent.entity, job.target_entity
    dumped = parent.tool.model_dump_json(exclude_none=True)
    # The entity's name appears in the tool name, id arguments and descriptions: move all of them.
    moved = dumped.replace(old, new).replace(old.replace("_", " "), new.replace("_", " "))
    moved = moved.replace(parent.domain.replace("_", " ") + " system", job.target_domain.replace("_", " ") + " system")
    raw = json.loads(moved)
    raw["spec"]["function"]["name"] = raw["spec"]["function"]["name"][:64]
    spec = ToolRecord.model_validate({"tool": raw, "domain": job.target_domain, "entity": new, "operator": "seed"}).tool
    dumped_spec = spec.model_dump(mode="json", exclude_none=True)
    if old not in parent.name:  # a seed named without its entity: mark the variant by its domain
        dumped_spec["spec"]["function"]["name"] = f"{parent.name}_{job.target_domain}"[:64]
    return {**dumped_spec["spec"], **{k: dumped_spec[k] for k in ("returns", "kind") if k in dumped_spec}}, job.target_domain, new


def _composition(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> tuple[JsonDict, str, str]:
    first, second = (parents[n] for n in job.parents)
    props: JsonDict = {}
    required: list[str] = []
    for i, part in enumerate((first, second)):
        params = part.parameters
        for key, schema in params.get("properties", {}).items():
            name = key if key not in props or props[key] == schema else f"{key}_{i + 1}"
            props[name] = schema
            if key in params.get("required", []) and name not in required:
                required.append(name)
    verb = split_name(second.name)[0] if split_name(second.name) else "then"
    name = f"{first.name}_and_{verb}"
    if second.entity != first.entity:
        name += "_" + second.entity.removeprefix(f"{second.domain}_")
    description = (f"In one call: {first.tool.spec.function.description.rstrip('.')}; then "
                   f"{second.tool.spec.function.description.rstrip('.').lower()}.")
    return _tool(name, description, props, required, _RESULT, "call"), first.domain, first.entity


_REALIZE: dict[str, Callable[[EvolveJob, Taxonomy, dict[str, ToolRecord]], tuple[JsonDict, str, str]]] = {
    "new_operation": _new_operation, "new_parameter": _new_parameter,
    "neighbour_variant": _neighbour_variant, "composition": _composition,
}
