"""MCP tools in toolgym: import specs from a server over stdio, then proxy or simulate them.

Needs the ``mcp`` package (``pip install 'toolgym[mcp]'``), imported only when a server starts.
"""

from toolgym.envs.mcp.client import MCPClient, MCPServerConfig
from toolgym.envs.mcp.convert import mcp_output, mcp_tool_to_sim, tool_name
from toolgym.envs.mcp.env import MCPToolEnv, load_mcp_tools, mcp_simulated_env
from toolgym.envs.mcp.errors import MCPServerError, MCPToolError

__all__ = [
    "MCPClient", "MCPServerConfig", "MCPServerError", "MCPToolEnv", "MCPToolError", "load_mcp_tools",
    "mcp_output", "mcp_simulated_env", "mcp_tool_to_sim", "tool_name",
]
