"""MCP wire forms to toolgym types: tool listings to ``SimTool``, call results to outputs.

Both work on the wire (camelCase) dicts, ``model_dump(by_alias=True)``, which the mcp SDK's
versions agree on, so the rest of the package does not depend on the SDK's Python names.
"""

from __future__ import annotations

import json
import re
from typing import Any

from toolgym.envs.mcp.errors import MCPToolError
from toolgym.envs.sim.spec import SimTool
from toolgym.envs.types import FunctionSpec, ToolSpec

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def tool_name(name: str) -> str:
    """An MCP tool name as a function-calling name (letters, digits, ``_ . -``; at most 64)."""
    clean = _BAD_CHARS.sub("_", name)
    if not re.match(r"[A-Za-z_]", clean[:1]):
        clean = "_" + clean
    return clean[:64]


def mcp_tool_to_sim(wire: dict[str, Any], *, server: str = "mcp") -> SimTool:
    """One entry of ``tools/list`` as a ``SimTool`` (its ``outputSchema``, if any, as ``returns``).

    Schema problems are found later, when the tool is compiled (``SchemaError`` names it).
    """
    name = tool_name(str(wire["name"]))
    description = wire.get("description") or wire.get("title") or f"The {wire['name']!r} tool of the {server} MCP server."
    parameters = dict(wire.get("inputSchema") or {"type": "object", "properties": {}})
    parameters.pop("title", None)  # the SDK's generated title says nothing to the model
    returns = wire.get("outputSchema")
    spec = ToolSpec(function=FunctionSpec(name=name, description=description, parameters=parameters))
    return SimTool(spec=spec, returns=returns)


def mcp_output(result: Any, name: str) -> Any:
    """The output of a ``tools/call`` result: structured content, else the content blocks.

    Raises:
        MCPToolError: the server marked the result as an error (``isError``).
    """
    wire = result.model_dump(by_alias=True, exclude_none=True, mode="json") if hasattr(result, "model_dump") else dict(result)
    content = wire.get("content", [])
    if wire.get("isError"):
        text = " ".join(b.get("text", "") for b in content if b.get("type") == "text").strip()
        raise MCPToolError(f"{name}: {text or 'the tool reported an error'}")
    blocks = [_block(b) for b in content]
    if "structuredContent" in wire:
        return wire["structuredContent"]
    if len(blocks) == 1:
        return blocks[0]
    return blocks


def _block(block: dict[str, Any]) -> Any:
    """A content block as an output: text (parsed when it is JSON) or a short description."""
    if block.get("type") == "text":
        text = block.get("text", "")
        try:
            return json.loads(text)
        except (json.JSONDecodeError, ValueError):
            return text
    return {k: v for k, v in block.items() if k in ("type", "mimeType", "uri", "name")}
