"""Schema-defined tools and the tool box that keeps backend failures apart from agent mistakes.

``schema_tool`` turns a ``ToolSpec`` and a function into a ``Tool`` whose arguments are checked
against the spec's JSON Schema (the ``@tool`` path checks them with pydantic instead), with the
same style of message for the model. ``BackendToolBox`` runs such tools; when the backend
behind them (a simulator, an MCP server) fails, the call's result is an error of kind
``simulator_error``, counted apart from the agent's own errors, instead of ``tool_exception``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from toolgym.envs.dispatch import ToolBox, error_result
from toolgym.envs.sim.base import BackendError
from toolgym.envs.sim.schema import compile_schema
from toolgym.envs.sim.text import invalid_text_at
from toolgym.envs.tools import ArgumentError, BoundTool, Tool
from toolgym.envs.types import ToolCall, ToolResult, ToolSpec
from toolgym.errors import did_you_mean


class JsonSchemaArguments(BaseModel):
    """Placeholder ``args_model`` of schema tools: their arguments are checked by JSON Schema."""


@dataclass(frozen=True)
class SchemaTool(Tool):
    """A ``Tool`` whose arguments are validated by the spec's JSON Schema."""

    validator: Any = None

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments unchanged when they fit the schema, else ``ArgumentError`` for the model."""
        if not isinstance(arguments, dict):
            raise ArgumentError(f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}")
        where = invalid_text_at(arguments, root="arguments")
        if where is not None:  # the model's mistake; never sent on to a simulator or a server
            raise ArgumentError(f"invalid arguments for {self.name!r}: {where} holds a lone surrogate (not valid Unicode text); write plain text")
        required = self.spec.function.parameters.get("required", [])
        found = [f"missing required argument {p!r}" for p in required if p not in arguments]
        found += [self._unexpected(k) for k in arguments if self._is_unexpected(k)]
        for err in sorted(self.validator.iter_errors(arguments), key=lambda e: list(map(str, e.path))):
            if err.path or err.validator not in ("required", "additionalProperties"):  # top level: done above
                where = ".".join(str(p) for p in err.path) or "arguments"
                found.append(f"argument {where!r}: {err.message}")
        if found:
            signature = ", ".join(self.param_names) or "no arguments"
            raise ArgumentError(f"invalid arguments for {self.name!r}: " + "; ".join(found[:4]) + f". Expected: {signature}.")
        return dict(arguments)

    def _is_unexpected(self, key: str) -> bool:
        # Like @tool's extra="forbid": an argument the schema does not declare is a mistake,
        # unless the schema explicitly allows more.
        extra = self.spec.function.parameters.get("additionalProperties")
        return key not in self.param_names and not (extra is True or isinstance(extra, dict))

    def _unexpected(self, key: str) -> str:
        return f"unexpected argument {key!r}.{did_you_mean(key, self.param_names)}".rstrip(".")


def schema_tool(spec: ToolSpec, fn: Callable[..., Any], *, is_async: bool = False, timeout_s: float | None = None) -> SchemaTool:
    """A tool named and described by ``spec`` that runs ``fn(**arguments)``.

    Raises:
        SchemaError: the spec's parameters are not a valid object schema.
    """
    params = spec.function.parameters
    validator = compile_schema(params, where=f"parameters of {spec.name!r}", require_object=True)
    return SchemaTool(
        fn=fn, spec=spec, args_model=JsonSchemaArguments, is_method=False, is_async=is_async,
        timeout_s=timeout_s, param_names=tuple(params.get("properties", {})), validator=validator,
    )


@dataclass(frozen=True)
class BackendFailure:
    """What a backend tool returns instead of raising, so the box can give the right error kind."""

    error: BackendError


def catch_backend(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a sync tool function: a ``BackendError`` comes back as a ``BackendFailure``."""

    @functools.wraps(fn)
    def run(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except BackendError as exc:
            return BackendFailure(exc)

    return run


def acatch_backend(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``catch_backend`` for async tool functions."""

    @functools.wraps(fn)
    async def run(**kwargs: Any) -> Any:
        try:
            return await fn(**kwargs)
        except BackendError as exc:
            return BackendFailure(exc)

    return run


class BackendToolBox(ToolBox):
    """A ``ToolBox`` whose tools front a backend; backend failures become ``simulator_error``.

    Args:
        tools: The bound tools.
        default_timeout_s: Deadline of async calls.
        on_failure: Told about every backend failure (environments end the episode on fatal ones).
        timeouts_are_backend: A missed deadline is the backend's fault (a slow simulator), not
            the tool's behaviour (a real API that timed out).
    """

    def __init__(
        self,
        tools: Iterable[BoundTool],
        *,
        default_timeout_s: float = 10.0,
        on_failure: Callable[[BackendError], None] | None = None,
        timeouts_are_backend: bool = False,
    ):
        super().__init__(tools, default_timeout_s=default_timeout_s)
        self.on_failure = on_failure
        self.timeouts_are_backend = timeouts_are_backend
        self.failures = 0
        """Backend failures seen by this box (one episode: environments rebuild it on reset)."""

    async def acall(self, call: ToolCall) -> ToolResult:
        """The call, with backend failures settled (``call`` is the inherited sync edge)."""
        return self._settle(call, await super().acall(call))

    def _settle(self, call: ToolCall, result: ToolResult) -> ToolResult:
        if isinstance(result.output, BackendFailure):
            return self._fail(call, result.output.error)
        if self.timeouts_are_backend and result.error is not None and result.error.kind == "timeout":
            return self._fail(call, BackendError(f"the simulated tool {call.name!r} did not answer in time ({result.error.message})"))
        return result

    def _fail(self, call: ToolCall, error: BackendError) -> ToolResult:
        self.failures += 1
        if self.on_failure is not None:
            self.on_failure(error)
        note = " This is an infrastructure failure, not caused by your call."
        return error_result(call, "simulator_error", f"{error}.{note}".replace("..", "."))


def tool_owner(tools: dict[str, Tool]) -> Any:
    """An object whose class holds ``tools``, for ``ToolEnv.tool_owners``.

    ``ToolEnv.reset`` collects tools from the classes of its tool owners; tools made at run
    time from schemas therefore live on a class made for the one environment that owns them.
    """
    return type("SchemaTools", (), {f"tool:{name}": t for name, t in tools.items()})()
