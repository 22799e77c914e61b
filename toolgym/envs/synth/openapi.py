"""OpenAPI 3 documents to simulated tools: one ``SimTool`` per operation.

Each operation (``GET /books/{bookId}``) becomes a function-calling tool: its name is the
``operationId`` (or method and path), its parameters the path, query and header parameters
plus the JSON request body, its ``returns`` the JSON schema of the first 2xx response. Every
``$ref`` into the document is inlined, so the tool's schemas stand alone.

Documents come from outside, so they are checked like hostile schemas: recursive ``$ref``s,
references that leave the document, huge enums, inlined schemas past a size limit and
``pattern``s that backtrack catastrophically are refused with an ``OpenAPIError`` naming the
operation and the place; one bad operation is skipped (and reported), the others still import.

>>> doc = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/items/{id}": {"get": {
...     "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "required": True,
...     "schema": {"type": "string"}}], "responses": {"200": {"description": "ok"}}}}}}
>>> [t.name for t in import_openapi(doc).tools]
['get_item']
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.sim.limits import check_schema_shape
from toolgym.envs.sim.schema import SchemaError
from toolgym.envs.sim.spec import SimTool, ToolKind, compile_tool, split_name
from toolgym.envs.types import FunctionSpec, JsonDict, ToolSpec

METHODS = ("get", "put", "post", "delete", "patch")
"""HTTP methods that become tools (``head``, ``options``, ``trace`` carry no tool semantics)."""
MAX_ENUM = 1_000
"""Most values one ``enum`` may list."""
MAX_INLINED_NODES = 5_000
"""Most objects and arrays a schema may have once its ``$ref``s are inlined."""
MAX_REF_DEPTH = 32
"""Deepest chain of ``$ref``s followed while inlining."""
MAX_OPERATIONS = 10_000
"""Most operations imported from one document."""
_KIND: dict[str, ToolKind] = {"post": "create", "put": "update", "patch": "update", "delete": "delete"}


class OpenAPIError(SchemaError):
    """An OpenAPI document, or one of its operations, cannot be imported."""


class ImportedTools(BaseModel):
    """What one document gave: the tools, and the operations refused with the reason."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    title: str = ""
    tools: list[SimTool] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)
    """Operation (``GET /path``) -> why it was not imported."""


def load_openapi(path: str | Path) -> ImportedTools:
    """Import the OpenAPI document in a ``.json``, ``.yaml`` or ``.yml`` file."""
    text = Path(path).read_text()
    try:
        doc = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise OpenAPIError(f"{path}: not valid JSON/YAML ({str(exc)[:200]})") from None
    return import_openapi(doc, where=str(path))


def import_openapi(doc: Any, *, where: str = "OpenAPI document") -> ImportedTools:
    """One ``SimTool`` per operation of ``doc``; bad operations are listed in ``refused``.

    Raises:
        OpenAPIError: the document as a whole is unusable (not an object, not OpenAPI 3, no paths).
    """
    if not isinstance(doc, dict):
        raise OpenAPIError(f"{where}: expected an OpenAPI object, got {type(doc).__name__}")
    version = str(doc.get("openapi", ""))
    if not version.startswith("3."):
        got = f"swagger {doc['swagger']}" if "swagger" in doc else repr(version or "no 'openapi' field")
        raise OpenAPIError(f"{where}: only OpenAPI 3.x documents are supported (field 'openapi': '3.0.3'), got {got}")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise OpenAPIError(f"{where}: field 'paths' must be a non-empty object of path -> operations")
    out = ImportedTools(title=str((doc.get("info") or {}).get("title", "")))
    names: set[str] = set()
    for path, item in paths.items():
        if not isinstance(item, dict):
            out.refused[str(path)] = "a path item must be an object of method -> operation"
            continue
        for method in METHODS:
            if method not in item:
                continue
            label = f"{method.upper()} {path}"
            if len(out.tools) >= MAX_OPERATIONS:
                out.refused[label] = f"the document has more than {MAX_OPERATIONS:,} operations"
                continue
            try:
                tool = _operation(doc, str(path), method, item, names)
            except SchemaError as exc:
                out.refused[label] = str(exc)
                continue
            names.add(tool.name)
            out.tools.append(tool)
    return out


def _operation(doc: JsonDict, path: str, method: str, item: JsonDict, taken: set[str]) -> SimTool:
    op = item[method]
    label = f"{method.upper()} {path}"
    if not isinstance(op, dict):
        raise OpenAPIError(f"{label}: an operation must be an object")
    name = tool_name(op.get("operationId") or f"{method}_{path}")
    if name in taken:
        raise OpenAPIError(f"{label}: operationId gives the tool name {name!r}, which another operation already has; make operationIds unique")
    props: JsonDict = {}
    required: list[str] = []
    params = [*_list(item.get("parameters"), label), *_list(op.get("parameters"), label)]
    for raw in params:
        param = _resolve(doc, raw, label)
        if not isinstance(param, dict) or "name" not in param or param.get("in") not in ("path", "query", "header"):
            continue  # cookies and malformed entries are not arguments a model can give
        key = str(param["name"])
        props[key] = _schema(doc, param.get("schema", {"type": "string"}), label, f"parameter {key!r}")
        if param.get("description"):
            props[key] = {**props[key], "description": str(param["description"])[:300]}
        if param.get("required") or param.get("in") == "path":
            required.append(key)
    body = _json_content(doc, op.get("requestBody"), label)
    if body is not None:
        schema = _schema(doc, body, label, "requestBody")
        if schema.get("type") == "object" and isinstance(schema.get("properties"), dict):
            props.update(schema["properties"])
            required += [r for r in schema.get("required", []) if r in schema["properties"]]
        else:
            props["body"] = schema
            required.append("body")
    parameters: JsonDict = {"type": "object", "properties": props}
    if required:
        parameters["required"] = sorted(set(required), key=required.index)
    description = str(op.get("summary") or op.get("description") or f"{label}.")[:1000]
    spec = ToolSpec(function=FunctionSpec(name=name, description=description, parameters=parameters))
    tool = SimTool(spec=spec, returns=_returns(doc, op, label), kind=_kind(method, path))
    compile_tool(tool)  # schemas compile, outputs can be generated: refused here, not in an env
    return tool


def _kind(method: str, path: str) -> ToolKind | None:
    """The HTTP method's meaning; None leaves it to the name (``POST /books/{id}/renew`` is no create)."""
    if method == "get":
        return "read" if path.rstrip("/").endswith("}") else "list"
    if method == "post" and "{" in path:
        return None
    return _KIND.get(method)


def tool_name(text: str) -> str:
    """``listBooks`` -> ``list_books``; ``get_/books/{id}`` -> ``get_books_id`` (at most 64 characters)."""
    words = split_name(re.sub(r"[^A-Za-z0-9]+", "_", text))
    name = "_".join(words) or "operation"
    return ("op_" + name if name[0].isdigit() else name)[:64]


def _list(value: Any, label: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OpenAPIError(f"{label}: 'parameters' must be a list, got {type(value).__name__}")
    return value


def _json_content(doc: JsonDict, body: Any, label: str) -> Any:
    """The schema of a JSON request body (None when there is no body or it is not JSON)."""
    if body is None:
        return None
    body = _resolve(doc, body, label)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        return None
    media = next((content[k] for k in content if "json" in str(k)), None)
    return media.get("schema", {"type": "object"}) if isinstance(media, dict) else None


def _returns(doc: JsonDict, op: JsonDict, label: str) -> JsonDict | None:
    responses = op.get("responses") or {}
    if not isinstance(responses, dict):
        raise OpenAPIError(f"{label}: 'responses' must be an object of status -> response")
    for status in sorted(str(s) for s in responses):
        if status.startswith("2"):
            response = _resolve(doc, responses.get(status) or responses.get(int(status)) or {}, label)
            schema = _json_content(doc, response, label)
            return _schema(doc, schema, label, f"response {status}") if schema is not None else None
    return None


def _resolve(doc: JsonDict, node: Any, label: str) -> Any:
    """A ``$ref`` object replaced by what it points at (chains followed, loops refused)."""
    seen: list[str] = []
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or len(seen) >= MAX_REF_DEPTH:
            raise OpenAPIError(f"{label}: $ref chain {' -> '.join([*seen, ref])[:200]} loops or is too long")
        seen.append(ref)
        node = _target(doc, ref, label)
    return node


def _target(doc: JsonDict, ref: str, label: str) -> Any:
    if not ref.startswith("#/"):
        raise OpenAPIError(f"{label}: $ref {ref[:80]!r} points outside the document; bundle the document first")
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise OpenAPIError(f"{label}: $ref {ref[:80]!r} points at nothing in the document")
        node = node[part]
    return node


def _schema(doc: JsonDict, schema: Any, label: str, what: str) -> JsonDict:
    """``schema`` with every ``$ref`` inlined, OpenAPI-only keywords translated, limits checked."""
    budget = [MAX_INLINED_NODES]
    out = _inline(doc, schema, (), label, what, budget)
    if not isinstance(out, dict):
        raise OpenAPIError(f"{label}: {what}: a schema must be an object, got {type(out).__name__}")
    check_schema_shape(out, f"{label}: {what}")
    return out


def _inline(doc: JsonDict, node: Any, refs: tuple[str, ...], label: str, what: str, budget: list[int]) -> Any:
    if isinstance(node, list):
        return [_inline(doc, x, refs, label, what, budget) for x in node]
    if not isinstance(node, dict):
        return node
    budget[0] -= 1
    if budget[0] < 0:
        raise OpenAPIError(f"{label}: {what}: more than {MAX_INLINED_NODES:,} schema parts once $refs are inlined; simplify it")
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in refs:
            raise OpenAPIError(f"{label}: {what}: $ref {ref!r} is recursive ({' -> '.join(refs)} -> {ref}); "
                               "recursive schemas cannot be simulated, cut the cycle")
        if len(refs) >= MAX_REF_DEPTH:
            raise OpenAPIError(f"{label}: {what}: $refs nest deeper than {MAX_REF_DEPTH}")
        return _inline(doc, copy.deepcopy(_target(doc, ref, label)), (*refs, ref), label, what, budget)
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > MAX_ENUM:
        raise OpenAPIError(f"{label}: {what}: an enum lists {len(enum):,} values, more than {MAX_ENUM:,}; use a string with a pattern")
    out = {k: _inline(doc, v, refs, label, what, budget) for k, v in node.items() if k not in _OPENAPI_ONLY}
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]  # OpenAPI 3.0's nullable is JSON Schema's type list
    return _merge_all_of(out)


def _merge_all_of(node: JsonDict) -> JsonDict:
    """``allOf`` of object schemas (OpenAPI's way to extend a model) as one object schema.

    The simulators read ``properties`` to build records; behind an ``allOf`` they would see none.
    """
    parts = node.get("allOf")
    if not isinstance(parts, list) or not all(isinstance(p, dict) and set(p) <= _MERGEABLE for p in parts):
        return node
    if any(p.get("type", "object") != "object" for p in parts):
        return node
    props: JsonDict = {}
    required: list[str] = []
    for part in parts:
        props.update(part.get("properties", {}))
        required += [r for r in part.get("required", []) if r not in required]
    merged = {k: v for k, v in node.items() if k != "allOf"}
    merged.update({"type": "object", "properties": {**merged.get("properties", {}), **props}})
    if required:
        merged["required"] = required
    return merged


_MERGEABLE = frozenset({"type", "properties", "required", "description", "title"})


_OPENAPI_ONLY = frozenset({"nullable", "discriminator", "xml", "externalDocs", "example", "readOnly", "writeOnly", "deprecated"})
