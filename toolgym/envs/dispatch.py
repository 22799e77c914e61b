"""Running tool calls: every way a call can go wrong ends as a ``ToolResult`` with an error.

``ToolBox`` is the only place that executes tools, so the rules (validation, deadlines,
truncation, serialization) hold the same for hand-written environments, simulated APIs and
MCP proxies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from toolgym.envs.tools import ArgumentError, BoundTool
from toolgym.envs.types import ToolCall, ToolError, ToolErrorKind, ToolMessage, ToolResult, ToolSpec, trusted
from toolgym.errors import did_you_mean

TRUNCATION_MARKER = "\n...[output truncated: {n} more characters]"

_THREADS: concurrent.futures.ThreadPoolExecutor | None = None


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _THREADS
    if _THREADS is None:
        _THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="toolgym-tool")
    return _THREADS


class ToolBox:
    """The tools of one environment instance, with the rules for calling them."""

    def __init__(self, tools: Iterable[BoundTool], *, default_timeout_s: float = 10.0):
        self.tools: dict[str, BoundTool] = {t.name: t for t in tools}
        self.default_timeout_s = default_timeout_s

    def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """Specs of all tools, or of the named subset (in the given order)."""
        if names is None:
            return [t.spec for t in self.tools.values()]
        return [self.tools[n].spec for n in names if n in self.tools]

    def restrict(self, names: Iterable[str] | None) -> ToolBox:
        """A box with only the named tools (None keeps all)."""
        if names is None:
            return self
        return ToolBox([self.tools[n] for n in names if n in self.tools], default_timeout_s=self.default_timeout_s)

    # ------------------------------------------------------------------ calling

    def _prepare(self, call: ToolCall) -> tuple[BoundTool, dict[str, Any]] | ToolResult:
        bound = self.tools.get(call.name)
        if bound is None:
            hint = did_you_mean(call.name, self.tools)
            available = ", ".join(self.tools) or "none"
            return error_result(
                call, "unknown_tool", f"unknown tool {call.name!r}.{hint} Available tools: {available}."
            )
        try:
            return bound, bound.tool.validate(call.arguments)
        except ArgumentError as exc:
            return error_result(call, "invalid_arguments", str(exc))

    def call(self, call: ToolCall) -> ToolResult:
        """Run one call synchronously. Never raises for anything the call or tool does."""
        prepared = self._prepare(call)
        if isinstance(prepared, ToolResult):
            return prepared
        bound, kwargs = prepared
        tool = bound.tool
        try:
            if tool.is_async:
                output = _run_coroutine(bound.call(**kwargs), tool.timeout_s or self.default_timeout_s)
            elif tool.timeout_s is not None:
                future = _threads().submit(bound.call, **kwargs)
                output = future.result(timeout=tool.timeout_s)
            else:
                output = bound.call(**kwargs)
        except Exception as exc:  # the tool's own failure is information for the model
            return _failed(call, exc, tool.timeout_s or self.default_timeout_s)
        return _ok(call, output)

    async def acall(self, call: ToolCall) -> ToolResult:
        """Run one call inside an event loop; async tools get the deadline, sync ones a thread."""
        prepared = self._prepare(call)
        if isinstance(prepared, ToolResult):
            return prepared
        bound, kwargs = prepared
        tool = bound.tool
        timeout = tool.timeout_s or self.default_timeout_s
        try:
            if tool.is_async:
                output = await asyncio.wait_for(bound.call(**kwargs), timeout)
            elif tool.timeout_s is not None:
                loop = asyncio.get_running_loop()
                fut = loop.run_in_executor(_threads(), lambda: bound.call(**kwargs))
                output = await asyncio.wait_for(fut, timeout)
            else:
                output = bound.call(**kwargs)
        except Exception as exc:
            return _failed(call, exc, timeout)
        return _ok(call, output)


def _failed(call: ToolCall, exc: Exception, timeout: float) -> ToolResult:
    """A deadline overrun or the tool's own exception, as an error result for the model."""
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return error_result(call, "timeout", f"tool {call.name!r} did not finish within {timeout:g}s")
    return error_result(call, "tool_exception", f"{type(exc).__name__}: {exc}")


def _ok(call: ToolCall, output: Any) -> ToolResult:
    return trusted(ToolResult, {"call_id": call.id, "name": call.name, "output": output, "error": None, "truncated": False})


def _run_coroutine(coro: Any, timeout: float) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asyncio.wait_for(coro, timeout))
    # Called from inside a running loop (a sync step in async code): use a private loop in a thread.
    return _threads().submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


def error_result(call: ToolCall, kind: ToolErrorKind, message: str) -> ToolResult:
    """A result that carries only an error."""
    return ToolResult(call_id=call.id, name=call.name, error=ToolError(kind=kind, message=message))


def render_output(output: Any) -> str:
    """The text the model reads for a successful output (strings verbatim, else JSON)."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    return _ENCODER.encode(output)


def _pydantic_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


# One encoder for all outputs: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_pydantic_default)


def to_message(result: ToolResult, max_chars: int) -> tuple[ToolResult, ToolMessage]:
    """Render a result for the model: JSON text, truncated to ``max_chars`` with a marker.

    Returns the (possibly updated) result too: an output that cannot be serialized turns
    into an ``unserializable_output`` error, and truncation sets ``truncated``.
    """
    if result.error is not None:
        text = f"Error ({result.error.kind}): {result.error.message}"
        return result, ToolMessage(tool_call_id=result.call_id, name=result.name, content=text, error=result.error.kind)
    try:
        text = render_output(result.output)
    except (TypeError, ValueError) as exc:
        result = ToolResult(
            call_id=result.call_id,
            name=result.name,
            error=ToolError(kind="unserializable_output", message=f"tool returned a value that is not JSON: {exc}"),
        )
        return to_message(result, max_chars)
    if len(text) > max_chars:
        text = text[:max_chars] + TRUNCATION_MARKER.format(n=len(text) - max_chars)
        result = result.model_copy(update={"truncated": True})
    message = {"role": "tool", "tool_call_id": result.call_id, "name": result.name, "content": text, "error": None}
    return result, trusted(ToolMessage, message)
