"""``MCPClient``: a synchronous handle on an MCP server over stdio, for environments.

``ToolEnv.step`` is synchronous and the MCP SDK is async, and an SDK session must be entered
and left in one task. So each client owns a background thread running a private event loop;
one long-lived task on it holds the stdio transport and the ``ClientSession`` open, and every
request (list, call) is submitted to that loop (a background loop kept on purpose, like the
shell runtime's: the session must outlive single calls). Callers await the request's future
through ``asyncio.wrap_future`` with a deadline; sync callers go through ``toolgym.aio.run_sync``,
so both work from any thread or loop.

A server that exits is noticed on the next request (the SDK reports the closed connection);
that request, and every one after, fails at once with a fatal ``MCPServerError`` (no hang):
the environment turns it into a ``simulator_error`` result and ends the episode as
``env_error``. ``restart()`` starts a fresh server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import tempfile
import threading
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from toolgym.aio import loop_needed, run_sync
from toolgym.envs.mcp.convert import mcp_output, mcp_tool_to_sim
from toolgym.envs.mcp.errors import MCPServerError, MCPToolError
from toolgym.envs.sim.spec import SimTool
from toolgym.envs.sim.text import invalid_text_at
from toolgym.errors import ConfigError

CONNECTION_CLOSED = -32000
"""JSON-RPC code the SDK uses when the server's side of the connection is gone."""


class MCPServerConfig(BaseModel):
    """How to start an MCP server over stdio."""

    model_config = ConfigDict(extra="forbid")

    command: str
    """Executable, for example ``sys.executable`` or ``"npx"``."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    """Extra environment variables for the server."""
    cwd: str | None = None
    name: str = "mcp"
    """Label used in messages."""
    start_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline for starting the server and the MCP handshake."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a request that has none of its own (listing tools)."""


class MCPClient:
    """One MCP server process and a session with it. Use as a context manager or call ``close``.

    Args:
        config: How to start the server.
    """

    def __init__(self, config: MCPServerConfig | dict[str, Any]):
        self.config = config if isinstance(config, MCPServerConfig) else MCPServerConfig.model_validate(config)
        self.names: dict[str, str] = {}
        """Tool name as offered to the model -> name on the server (they differ when sanitized)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: Any = None
        self._stop: asyncio.Event | None = None
        self._runner: concurrent.futures.Future[None] | None = None
        self._dead: str | None = None
        self._errlog: Any = None
        """The server's stderr (kept for error messages; the SDK's default would print it)."""
        self.last_stderr = ""
        """The end of the server's stderr when it was last found dead (for logs, not the model)."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        """Whether the session is up and no request has found the server gone."""
        return self._session is not None and self._dead is None

    def start(self) -> Self:
        """Start the server and open the session (no-op when already alive).

        Raises:
            MCPServerError: the server did not start or finish the handshake in time.
        """
        if self.alive:
            return self
        self.close()
        try:
            from mcp import ClientSession, StdioServerParameters, stdio_client
        except ImportError as exc:
            raise ConfigError("MCP support needs the `mcp` package: pip install 'toolgym[mcp]'") from exc
        self._dead = None
        self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"toolgym-mcp-{self.config.name}", daemon=True)
        self._thread.start()
        params = StdioServerParameters(command=self.config.command, args=self.config.args, env=self.config.env, cwd=self.config.cwd)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._runner = asyncio.run_coroutine_threadsafe(self._hold(stdio_client, ClientSession, params, ready), self._loop)
        try:
            ready.result(timeout=self.config.start_timeout_s)
        except Exception as exc:
            reason = "did not finish the MCP handshake in time" if isinstance(exc, concurrent.futures.TimeoutError) else f"failed to start ({type(exc).__name__}: {exc})"
            self.close()
            raise MCPServerError(f"MCP server {self.config.name!r} ({self.config.command}) {reason}{self._stderr_tail()}", fatal=True) from None
        return self

    async def _hold(self, stdio_client: Any, session_cls: Any, params: Any, ready: concurrent.futures.Future[None]) -> None:
        """The one task that keeps the transport and session open until ``close``."""
        self._stop = asyncio.Event()
        try:
            async with stdio_client(params, errlog=self._errlog) as (read, write), session_cls(read, write) as session:
                await session.initialize()
                self._session = session
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # startup failure or transport torn down (exception groups too): report, never hang
            if not ready.done():
                ready.set_exception(exc)
            self._dead = self._dead or f"connection lost ({type(exc).__name__})"
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None

    def restart(self) -> Self:
        """A fresh server process and session."""
        self.close()
        return self.start()

    def close(self) -> None:
        """Stop the session and the server (idempotent; bounded waits)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        if loop is None:
            return
        if self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
        if runner is not None:
            try:
                runner.result(timeout=10)
            except Exception:  # a dead server's transport may end with an error; it is closed either way
                runner.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
        self._session = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def list_tools(self) -> list[SimTool]:
        """The server's tools as ``SimTool``s (input schema, description, output schema if any).

        Raises:
            SchemaError: a tool's input schema does not compile (named).
        """
        timeout = self.config.request_timeout_s
        result = run_sync(self._await(self._request(lambda s: s.list_tools(), timeout), timeout))
        tools = []
        for raw in result.tools:
            wire = raw.model_dump(by_alias=True, exclude_none=True, mode="json")
            tool = mcp_tool_to_sim(wire, server=self.config.name)
            self.names[tool.name] = wire["name"]
            tools.append(tool)
        return tools

    def call_tool(self, name: str, arguments: dict[str, Any], timeout_s: float | None = None) -> Any:
        """``acall_tool`` from sync code."""
        return run_sync(self.acall_tool(name, arguments, timeout_s))

    async def acall_tool(self, name: str, arguments: dict[str, Any], timeout_s: float | None = None) -> Any:
        """Call a tool and return its output; raises ``MCPToolError``/``MCPServerError``.

        The request runs on the client's own loop under ``timeout_s`` (default: the config's).
        Arguments holding text UTF-8 cannot carry (a lone surrogate) are refused with
        ``MCPToolError`` and never sent: a server dies on them.
        """
        where = invalid_text_at(arguments, root="arguments")
        if where is not None:  # the SDK would send it and the server would die on it: the caller's mistake
            raise MCPToolError(f"{name}: {where} holds a lone surrogate (not valid Unicode text); not sent to the server")
        timeout = timeout_s or self.config.request_timeout_s
        future = self._request(lambda s: s.call_tool(self.names.get(name, name), arguments), timeout)
        return mcp_output(await self._await(future, timeout), name)

    def _request(self, make: Any, timeout: float) -> concurrent.futures.Future[Any]:
        if self._dead is not None or self._loop is None or self._session is None:
            why = self._dead or "not started"
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.set_exception(MCPServerError(f"MCP server {self.config.name!r} is not running ({why})", fatal=True))
            return fut
        session = self._session
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(make(session), timeout), self._loop)

    async def _await(self, future: concurrent.futures.Future[Any], timeout: float) -> Any:
        """The result of a request on the client's loop, awaited from any thread or loop."""
        await loop_needed()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout + 1.0)  # the loop-side wait_for fires first
        except Exception as exc:
            future.cancel()
            raise self._explain(exc, timeout) from None

    def _explain(self, exc: BaseException, timeout: float) -> Exception:
        """A request failure as the right error: gone server (fatal), slow server, or tool error."""
        if isinstance(exc, (MCPServerError, MCPToolError)):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)):
            return MCPServerError(f"MCP server {self.config.name!r} did not answer within {timeout:g}s")
        if getattr(exc, "code", None) == CONNECTION_CLOSED or "closed" in str(exc).lower():
            self._dead = f"connection closed: {exc}"
            self.last_stderr = self._stderr_tail()
            return MCPServerError(f"MCP server {self.config.name!r} died or closed the connection", fatal=True)
        return MCPServerError(f"MCP server {self.config.name!r} failed the request: {type(exc).__name__}: {exc}")

    def _stderr_tail(self, chars: int = 300) -> str:
        try:
            self._errlog.seek(0)
            text = self._errlog.read()[-chars:].strip()
        except (AttributeError, OSError, ValueError):  # no log (closed or never started)
            return ""
        return f"; server stderr ends with: {json.dumps(text)}" if text else ""
