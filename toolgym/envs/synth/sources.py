"""Where seed tools come from: OpenAPI documents, MCP servers, Python classes, shipped domains.

Each source gives ``ToolRecord``s (operator ``seed``) in a domain named after the source, and
a taxonomy ``Domain`` built from them (one entity per tool entity, its fields from the create
tool's parameters), so evolution can grow the seeds like the generated domains. A source that
cannot be read is an ``ItemFailure`` of the ``seeds`` stage; the others still load.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

from toolgym.envs.env import tool_env
from toolgym.envs.sim.schema import SchemaError
from toolgym.envs.sim.spec import SimTool, compile_tool
from toolgym.envs.synth.openapi import OpenAPIError, load_openapi
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.synth.taxonomy import Domain, Entity
from toolgym.envs.tools import collect_tools
from toolgym.envs.types import Task, ToolSpec
from toolgym.errors import ConfigError, ToolgymError

STAGE = "seeds"
_HOSTILE = re.compile(r"recursive|backtracks|enum lists|nests deeper|more than|outside the document|exceeds|loops")


def slug(text: str) -> str:
    """A taxonomy name from free text: ``Clinic API`` -> ``clinic_api`` (at most 24 characters)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    name = "_".join(words)[:24].strip("_") or "source"
    return name if name[0].isalpha() else f"s_{name}"[:24]


def seeds_from_tools(tools: Sequence[SimTool | ToolSpec | dict[str, Any]], domain: str) -> tuple[list[ToolRecord], Domain, list[ItemFailure]]:
    """Seed records of ``tools`` in ``domain``, the domain's taxonomy entry, and the tools refused."""
    records: list[ToolRecord] = []
    failures: list[ItemFailure] = []
    entities: dict[str, Entity] = {}
    for raw in tools:
        label = getattr(raw, "name", None) or (raw.get("function", {}).get("name") if isinstance(raw, dict) else "?")
        try:
            tool = SimTool.coerce(raw)
            compiled = compile_tool(tool)
        except SchemaError as exc:
            failures.append(ItemFailure(stage=STAGE, item=f"{domain}/{label}", kind=_kind(str(exc)), message=str(exc)[:300]))
            continue
        entity = compiled.entity if compiled.entity.startswith(domain) else f"{domain}_{compiled.entity}"[:31]
        entity = re.sub(r"[^a-z0-9_]", "_", entity.lower())
        fields = compiled.params.get("properties", {}) if compiled.kind == "create" else {}
        if entity not in entities or (fields and not entities[entity].fields):
            entities[entity] = Entity(name=entity, fields={k: v for k, v in fields.items() if isinstance(v, dict)})
        records.append(ToolRecord(tool=tool, domain=domain, entity=entity, operator="seed", source="seed"))
    return records, Domain(name=domain, area="seed", entities=list(entities.values())), failures


def _kind(message: str) -> Any:
    return "hostile_input" if _HOSTILE.search(message) else "malformed_input"


def seeds_from_openapi(path: str) -> tuple[list[ToolRecord], Domain | None, list[ItemFailure]]:
    """Seeds from an OpenAPI 3 file; refused operations become failures, a refused file one failure."""
    try:
        imported = load_openapi(path)
    except (OpenAPIError, OSError) as exc:
        return [], None, [ItemFailure(stage=STAGE, item=str(path), kind=_kind(str(exc)), message=str(exc)[:300])]
    domain = slug(imported.title or str(path).rsplit("/", 1)[-1].split(".")[0])
    records, entry, failures = seeds_from_tools(imported.tools, domain)
    failures += [ItemFailure(stage=STAGE, item=f"{path}: {op}", kind=_kind(why), message=why[:300]) for op, why in imported.refused.items()]
    return records, entry, failures


def seeds_from_mcp(server: dict[str, Any]) -> tuple[list[ToolRecord], Domain | None, list[ItemFailure]]:
    """Seeds from the tools an MCP server lists (the server is started, asked, and stopped)."""
    from toolgym.envs.mcp.env import load_mcp_tools

    name = str(server.get("name", "mcp"))
    try:
        tools = load_mcp_tools(server)
    except (ToolgymError, OSError) as exc:
        return [], None, [ItemFailure(stage=STAGE, item=f"mcp:{name}", kind="malformed_input", message=str(exc)[:300])]
    records, entry, failures = seeds_from_tools(tools, slug(name))
    return records, entry, failures


def seeds_from_env(target: str) -> tuple[list[ToolRecord], Domain | None, list[ItemFailure]]:
    """Seeds from a shipped environment id (``toolgym/retail-v0``) or a Python class (``pkg.mod:Class``).

    A class that is not an environment is wrapped with ``toolgym.envs.api.from_class``: its
    public methods are the tools.
    """
    try:
        specs, name = _env_specs(target)
    except (ToolgymError, ImportError, AttributeError, TypeError) as exc:
        return [], None, [ItemFailure(stage=STAGE, item=target, kind="malformed_input", message=f"{type(exc).__name__}: {exc}"[:300])]
    return seeds_from_tools(specs, slug(name))


def _env_specs(target: str) -> tuple[list[ToolSpec], str]:
    import toolgym
    from toolgym.envs.env import ToolEnv

    if ":" in target and "/" not in target.partition(":")[0]:
        module, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, type) and not issubclass(obj, ToolEnv):
            from toolgym.envs.api.wrap import from_class

            obj = from_class(obj)
        env = obj()
        name = attr
    else:
        env = toolgym.make(target)
        name = target.split("/")[-1].rsplit("-v", 1)[0]
    try:
        try:
            env.reset(seed=0)
        except ConfigError:  # an env without tasks of its own (a wrapped class): any task will do
            env.reset(seed=0, options={"task": Task(id="seed-listing", instruction="List the tools.")})
        # Every tool of the env's owners, not only those the sampled task offers.
        specs = [t.spec for owner in tool_env(env).tool_owners() for t in collect_tools(owner)]
    finally:
        env.close()
    return specs, name
