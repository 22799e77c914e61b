"""Environments from MCP servers: proxy the real tools, or simulate them from their schemas.

``MCPToolEnv`` offers a real server's tools and forwards every call to it (``call_tool``).
The server's own state lives outside the environment, so the world recorded here is the list
of calls and outputs: the digest tells what happened, but ``restore`` cannot rewind the
server (use ``restart_on_reset`` for a clean server per episode, or simulate). A server that
dies mid-episode gives the call a ``simulator_error`` result and ends the episode as
``env_error``; the next ``reset`` starts a new server.

``mcp_simulated_env`` imports the tool specs once and returns a ``SimulatedToolEnv``: no server
while training, and snapshots, restores and digests work as for any simulated API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolgym.envs.env import ToolEnv
from toolgym.envs.mcp.client import MCPClient, MCPServerConfig
from toolgym.envs.mcp.errors import MCPServerError, MCPToolError
from toolgym.envs.sim.base import BackendError, Simulator
from toolgym.envs.sim.box import BackendToolBox, acatch_backend, schema_tool, tool_owner
from toolgym.envs.sim.env import SimulatedToolEnv
from toolgym.envs.sim.spec import SimTool
from toolgym.envs.sim.text import invalid_text_at
from toolgym.envs.tools import Tool
from toolgym.envs.types import Observation, StopReason, Task
from toolgym.envs.users.base import SimulatedUser
from toolgym.errors import ConfigError

SYSTEM_PROMPT = "You are a helpful assistant with access to tools. Use them to do what the user asks, then answer briefly."


def load_mcp_tools(server: MCPServerConfig | dict[str, Any]) -> list[SimTool]:
    """Start the server, list its tools, stop it. Raises ``MCPServerError`` if it does not start."""
    with MCPClient(server) as client:
        return client.list_tools()


def mcp_simulated_env(server: MCPServerConfig | dict[str, Any], simulator: Simulator | None = None, **kwargs: Any) -> SimulatedToolEnv:
    """A ``SimulatedToolEnv`` with the server's tools (keyword arguments go to it)."""
    return SimulatedToolEnv(load_mcp_tools(server), simulator, **kwargs)


class MCPToolEnv(ToolEnv):
    """The tools of a real MCP server, every call forwarded to it.

    Args:
        server: How to start the server (``MCPServerConfig`` or a dict of its fields).
        tasks: Tasks to draw from (required for ``reset`` without a task: a real server's
            state cannot be set up from a task, so tasks are not synthesized here).
        tool_format: How assistant text encodes tool calls.
        user: Simulated user (None: solo).
        restart_on_reset: A fresh server process for every episode (clean server state).
        system_prompt: Default system prompt.

    Raises:
        MCPServerError: the server does not start.
        SchemaError: a tool's input schema does not compile.
    """

    def __init__(
        self,
        server: MCPServerConfig | dict[str, Any],
        *,
        tasks: Sequence[Task] | None = None,
        tool_format: str = "hermes",
        user: SimulatedUser | None = None,
        restart_on_reset: bool = False,
        system_prompt: str = SYSTEM_PROMPT,
        render_mode: str | None = None,
    ):
        super().__init__(tool_format=tool_format, tasks=tasks, render_mode=render_mode, user=user)
        self.system_prompt = system_prompt  # type: ignore[misc]  # per-instance prompt shadows the class default on purpose
        self.restart_on_reset = restart_on_reset
        self.client = MCPClient(server).start()
        self.mcp_tools = self.client.list_tools()
        self._owner = tool_owner({t.name: self._make_tool(t) for t in self.mcp_tools})
        self.world: dict[str, Any] = {"calls": []}

    def setup(self, task: Task) -> None:
        if task.initial_state:
            raise ConfigError(
                f"task {task.id!r} has an initial_state, but a real MCP server's state cannot be set from a task; "
                "leave initial_state empty, or use mcp_simulated_env() to simulate the server"
            )
        self.world = {"calls": []}

    def tool_owners(self) -> list[Any]:
        return [self._owner]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        if self.restart_on_reset or not self.client.alive:
            self.client.restart()
        obs, info = super().reset(seed=seed, options=options)
        self.toolbox = BackendToolBox(self.toolbox.tools.values(), default_timeout_s=self.toolbox.default_timeout_s, on_failure=self._on_backend_failure)
        return obs, info

    def close(self) -> None:
        super().close()
        self.client.close()

    def _make_tool(self, tool: SimTool) -> Tool:
        async def forward(**arguments: Any) -> Any:
            # The arguments were checked against the schema (lone surrogates included) before this.
            try:
                output = await self.client.acall_tool(tool.name, arguments)
            except MCPToolError as exc:
                self._refuse_broken_text(tool.name, str(exc), "its error message")
                self.world["calls"].append({"tool": tool.name, "arguments": arguments, "error": str(exc)})
                raise
            self._refuse_broken_text(tool.name, output, "output")
            self.world["calls"].append({"tool": tool.name, "arguments": arguments, "output": output})
            return output

        return schema_tool(tool.spec, acatch_backend(forward), is_async=True)

    def _refuse_broken_text(self, tool: str, value: Any, what: str) -> None:
        """A server answer holding text UTF-8 cannot carry is broken backend output (not fatal)."""
        where = invalid_text_at(value, root=what)
        if where is not None:
            raise MCPServerError(f"MCP server {self.client.config.name!r} answered {tool!r} unusably: {where} holds a lone surrogate (not valid Unicode text)")

    def _on_backend_failure(self, error: BackendError) -> None:
        if error.fatal:  # the server is gone: the episode cannot be scored, end it as infrastructure
            self._stop = StopReason.ENV_ERROR
