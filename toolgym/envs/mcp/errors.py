"""Errors of the MCP bridge: the server failed (infrastructure) or the tool did (the agent's)."""

from __future__ import annotations

from toolgym.envs.sim.base import BackendError
from toolgym.errors import ToolgymError


class MCPServerError(BackendError):
    """The MCP server could not start, stopped answering, or died (infrastructure)."""


class MCPToolError(ToolgymError):
    """The MCP tool ran and reported an error (``isError``): the agent's to handle, like any API error."""
