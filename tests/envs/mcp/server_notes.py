"""A small MCP server over stdio for the tests: a notebook of notes, plus a tool that kills it.

Run as ``python server_notes.py``; the client starts it as a subprocess. It uses the SDK's
high-level server class (``MCPServer`` in mcp 2, ``FastMCP`` in mcp 1).
"""

from __future__ import annotations

import os
from typing import Any

try:  # mcp >= 2
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

server = _Server("notes")
_NOTES: dict[str, dict[str, Any]] = {}


@server.tool()
def add_note(title: str, body: str = "") -> dict[str, Any]:
    """Create a note and return it with its new id."""
    note = {"id": f"n{len(_NOTES) + 1}", "title": title, "body": body}
    _NOTES[note["id"]] = note
    return note


@server.tool()
def get_note(id: str) -> dict[str, Any]:
    """Read one note by id."""
    if id not in _NOTES:
        raise ToolError(f"no note with id {id!r}")
    return _NOTES[id]


@server.tool()
def count_notes() -> int:
    """How many notes exist."""
    return len(_NOTES)


@server.tool()
def crash() -> str:
    """Kill the server process at once (to test a server dying mid-episode)."""
    os._exit(3)


@server.tool()
def hang(seconds: float = 30.0) -> str:
    """Block for a while without answering (to test deadlines)."""
    import time

    time.sleep(seconds)
    return "woke up"


if __name__ == "__main__":
    server.run()
