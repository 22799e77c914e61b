"""Running tool calls: every way a call can go wrong ends as a ``ToolResult`` with an error.

``ToolBox`` is the only place that executes tools, so the rules (validation, deadlines,
truncation, serialization) hold the same for hand-written environments, simulated APIs and
MCP proxies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import json.encoder
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from toolgym.aio import driven_by_hand, loop_needed, run_sync
from toolgym.envs import deadline
from toolgym.envs.tools import ArgumentError, BoundTool, PolicyViolation
from toolgym.envs.types import ToolCall, ToolError, ToolErrorKind, ToolMessage, ToolResult, ToolSpec, trusted
from toolgym.errors import EnvError, did_you_mean

TRUNCATION_MARKER = "\n...[output truncated: {n} more characters]"
NAME_CHARS = 80
"""A tool name the model sent is quoted in messages up to this many characters."""


@dataclass(slots=True)
class CallContext:
    """Where a tool call happens: what a ``call_tool`` override may decide by.

    One context serves all the calls of a turn (``index`` moves on); wrappers read it when a
    call starts, and may record events in ``faults`` (they become the step's ``info["faults"]``).
    """

    episode_seed: int
    """Fixed at reset from the reset seed (``reset(seed=s)`` then unseeded resets repeat, as in
    gymnasium; never seeded: random) and restored with snapshots."""
    position: int
    """Messages in the conversation before this turn's assistant message."""
    calls: list[ToolCall]
    """This turn's calls that run, in order (calls refused by the budgets are not here)."""
    tools: Mapping[str, BoundTool]
    """The tools this episode offers, by name."""
    timeout_s: float
    """The episode's default tool deadline (``task.limits.tool_timeout_s``)."""
    index: int = 0
    """The place of the current call in ``calls``."""
    faults: list[dict[str, Any]] = field(default_factory=list)
    """Events wrappers injected this turn (``info["faults"]``)."""


CallTool = Callable[[ToolCall, CallContext], Awaitable[ToolResult]]
"""The signature of ``ToolEnv.call_tool`` and its overrides."""


class ToolBox:
    """The tools of one environment instance, with the rules for calling them."""

    def __init__(self, tools: Iterable[BoundTool], *, default_timeout_s: float = 10.0):
        self.tools: dict[str, BoundTool] = {t.name: t for t in tools}
        self.default_timeout_s = default_timeout_s
        self.atomic: tuple[Callable[[], Any], Callable[[Any], None]] | None = None
        """(save, load) of the world: when set, a call that fails is rolled back (see ``ToolEnv.atomic_calls``)."""
        self.sync_tools_inline = False
        """Sync tools without ``timeout_s`` run in the caller's thread even on an event loop (see ``ToolEnv.sync_tools_inline``)."""

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
            name = call.name if len(call.name) <= NAME_CHARS else call.name[:NAME_CHARS] + "..."
            return error_result(call, "unknown_tool", f"unknown tool {name!r}.{hint} Available tools: {available}.")
        try:
            return bound, bound.tool.validate(call.arguments)
        except ArgumentError as exc:
            return error_result(call, "invalid_arguments", str(exc))
        except EnvError as exc:  # the tool's own schema could not be applied (a slow pattern): not the model's fault
            return error_result(call, "simulator_error", f"the arguments of {call.name!r} could not be checked: {exc}")

    def call(self, call: ToolCall) -> ToolResult:
        """``acall`` from sync code (see ``toolgym.aio.run_sync``: a pure-Python tool needs no event loop).

        Raises:
            deadline.PoolSaturated: every worker thread is stuck in an earlier call
                (an ``EnvError``: infrastructure, never charged to the model).
        """
        return run_sync(self.acall(call))

    async def acall(self, call: ToolCall) -> ToolResult:
        """Run one call. Never raises for anything the call or tool does.

        Every call has a deadline (the tool's ``timeout_s``, else the episode's): async tools
        run under ``wait_for``; sync tools run inline under the watchdog or on a worker thread
        (awaited for at most the deadline plus ``deadline.GRACE_S``), by the policy in
        ``toolgym.envs.deadline``: workers when the tool declares ``timeout_s``, when an event
        loop drives this call (unless ``sync_tools_inline``), or once the tool was caught blocking.

        Raises:
            deadline.PoolSaturated: every worker thread is stuck in an earlier call
                (an ``EnvError``: infrastructure, never charged to the model).
        """
        prepared = self._prepare(call)
        if isinstance(prepared, ToolResult):
            return prepared
        bound, kwargs = prepared
        tool = bound.tool
        timeout = tool.timeout_s or self.default_timeout_s
        saved = self.atomic[0]() if self.atomic is not None and not tool.read_only else _NOTHING
        try:
            if tool.is_async:
                await loop_needed()
                output = await asyncio.wait_for(bound.call(**kwargs), timeout)
            elif tool.timeout_s is None and (self.sync_tools_inline or driven_by_hand()) and id(tool.fn) not in deadline.BLOCKING:
                output = deadline.WATCHDOG.run(bound.call, kwargs, timeout)
            else:
                await loop_needed()
                output = await deadline.WORKERS.run(bound.call, kwargs, timeout)
        except deadline.PoolSaturated:
            raise
        except deadline.Overran as exc:  # it held this thread, stuck in C: workers from now on
            deadline.mark_blocking(tool.fn, tool.name)
            self._roll_back(saved)
            return _failed(call, exc, timeout)
        except Exception as exc:  # the tool's own failure is information for the model
            self._roll_back(saved)
            return _failed(call, exc, timeout)
        return _ok(call, output)

    def _roll_back(self, saved: Any) -> None:
        if self.atomic is not None and saved is not _NOTHING:
            self.atomic[1](saved)


_NOTHING = object()


def _failed(call: ToolCall, exc: Exception, timeout: float) -> ToolResult:
    """A deadline overrun, a policy refusal or the tool's own exception, as an error result."""
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return error_result(call, "timeout", f"tool {call.name!r} did not finish within {timeout:g}s")
    if isinstance(exc, PolicyViolation):
        return error_result(call, "policy_violation", _exception_text(exc))
    return error_result(call, "tool_exception", f"{type(exc).__name__}: {_exception_text(exc)}")


def _exception_text(exc: BaseException, limit: int = 2000) -> str:
    """``str(exc)``, cut; an exception whose ``__str__`` itself fails still gets a message."""
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not escape step()
        text = f"<{type(exc).__name__} whose message cannot be shown>"
    return text if len(text) <= limit else text[:limit] + "..."


def _ok(call: ToolCall, output: Any) -> ToolResult:
    return trusted(ToolResult, {"call_id": call.id, "name": call.name, "output": output, "error": None, "truncated": False})


def error_result(call: ToolCall, kind: ToolErrorKind, message: str) -> ToolResult:
    """A result that carries only an error."""
    return ToolResult(call_id=call.id, name=call.name, error=ToolError(kind=kind, message=message))


def error_message(call_id: str, name: str, kind: ToolErrorKind, message: str, max_chars: int) -> ToolMessage:
    """The one way an error reaches the model: ``Error (<kind>): <message>``, capped to ``max_chars``."""
    return ToolMessage(tool_call_id=call_id, name=name, content=cap(f"Error ({kind}): {message}", max_chars), error=kind)


def cap(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with a marker saying how much was dropped."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + TRUNCATION_MARKER.format(n=len(text) - max_chars)


def render_output(output: Any) -> str:
    """The text the model reads for a successful output (strings verbatim, else JSON).

    Raises:
        TypeError, ValueError, RecursionError: the output is not JSON (an unknown type, NaN,
            nesting too deep or a cycle).
    """
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    if _C_ENCODE is None:  # an interpreter without the C accelerator
        return _ENCODER.encode(output)
    return "".join(_C_ENCODE(output, 0))


def _pydantic_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


# One encoder for all outputs: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_pydantic_default)
# JSONEncoder.encode still builds its C encoder on every call; this one is built once. It keeps
# no state between calls (no cycle markers: a cycle ends in RecursionError), so threads share it.
_MAKE_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # the C accelerator (typeshed does not list it)
_C_ENCODE = (
    None if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(None, _pydantic_default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False)
)


def to_message(result: ToolResult, max_chars: int) -> tuple[ToolResult, ToolMessage]:
    """Render a result for the model: JSON text, truncated to ``max_chars`` with a marker.

    Returns the (possibly updated) result too: an output that cannot be serialized turns
    into an ``unserializable_output`` error, and truncation sets ``truncated``.
    """
    if result.error is not None:
        return result, error_message(result.call_id, result.name, result.error.kind, result.error.message, max_chars)
    try:
        text = render_output(result.output)
    except (TypeError, ValueError, RecursionError) as exc:
        result = ToolResult(
            call_id=result.call_id,
            name=result.name,
            error=ToolError(kind="unserializable_output", message=f"tool returned a value that is not JSON: {_exception_text(exc, 300)}"),
        )
        return to_message(result, max_chars)
    if len(text) > max_chars:
        text = text[:max_chars] + TRUNCATION_MARKER.format(n=len(text) - max_chars)
        result = result.model_copy(update={"truncated": True})
    message = {"role": "tool", "tool_call_id": result.call_id, "name": result.name, "content": text, "error": None}
    return result, trusted(ToolMessage, message)
