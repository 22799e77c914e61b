"""``FaultInjection``: seeded tool failures, so agents learn to cope with unreliable APIs.

Per tool (or for all), a call can be refused before it runs (``error`` -> ``injected_fault``,
``timeout`` -> ``timeout``, ``rate_limit`` -> ``rate_limited``, also deterministically past
``max_calls_per_turn``), or run and come back damaged (``malformed``: an unreadable body, an
``injected_fault`` error, although the call took effect; ``partial``: an output with parts
missing). ``latency_s`` adds real waiting. Every fault is an event in ``info["faults"]``.

Decisions are drawn from (episode seed, position in the conversation, call id, tool,
arguments), and the episode seed from the reset seed, so the same seed and actions give the
same faults, also after ``restore``; a call retried in a later turn draws afresh, even where
the model reuses its call ids (``call_0`` every turn). The wrapper overrides one method,
``call_tool``; everything it decides by comes in the call's ``CallContext``.

>>> import toolgym
>>> env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(default=FaultSpec(error=1.0)))
>>> obs, info = env.reset(seed=0)
>>> obs, *_, info = env.step('<tool_call>{"name": "recall", "arguments": {"name": "x"}}</tool_call>')
>>> obs.messages[0].error, info["faults"][0]["kind"]
('injected_fault', 'error')
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.aio import loop_needed
from toolgym.envs.canonical import seed_from
from toolgym.envs.dispatch import CallContext, error_result, render_output
from toolgym.envs.env import ToolEnv
from toolgym.envs.types import ToolCall, ToolErrorKind, ToolResult
from toolgym.envs.wrappers.tool_call import ToolCallWrapper

FaultKind = Literal["error", "timeout", "rate_limit", "malformed", "partial", "latency"]
_REFUSALS: tuple[FaultKind, ...] = ("error", "timeout", "rate_limit")
_DAMAGE: tuple[FaultKind, ...] = ("malformed", "partial")


class FaultSpec(BaseModel):
    """Fault probabilities of one tool (each call draws at most one fault)."""

    model_config = ConfigDict(extra="forbid")

    error: float = Field(default=0.0, ge=0, le=1)
    """Refused with a server error (``injected_fault``); the call does not run."""
    timeout: float = Field(default=0.0, ge=0, le=1)
    """Refused as timed out (``timeout``); the call does not run."""
    rate_limit: float = Field(default=0.0, ge=0, le=1)
    """Refused with a 429 (``rate_limited``); the call does not run."""
    malformed: float = Field(default=0.0, ge=0, le=1)
    """The call runs but its response is unreadable (``injected_fault``)."""
    partial: float = Field(default=0.0, ge=0, le=1)
    """The call runs and its output loses fields or items (the result still looks fine)."""
    latency_s: tuple[float, float] = (0.0, 0.0)
    """Added delay, uniform in [low, high] seconds."""
    max_calls_per_turn: int | None = Field(default=None, ge=0)
    """Calls of this tool in one turn beyond this get a 429."""

    @model_validator(mode="after")
    def _check(self) -> FaultSpec:
        total = self.error + self.timeout + self.rate_limit + self.malformed + self.partial
        if total > 1 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g}; each call draws at most one fault, so they must sum to <= 1")
        low, high = self.latency_s
        if not 0 <= low <= high:
            raise ValueError(f"latency_s must be (low, high) with 0 <= low <= high, got {self.latency_s}")
        return self


class FaultConfig(BaseModel):
    """Faults for all tools (``default``) and per tool (``tools``)."""

    model_config = ConfigDict(extra="forbid")

    default: FaultSpec = Field(default_factory=FaultSpec)
    tools: dict[str, FaultSpec] = Field(default_factory=dict)
    seed: int = 0
    """Mixed with the reset seed: different values give different fault patterns."""

    def for_tool(self, name: str) -> FaultSpec:
        return self.tools.get(name, self.default)


class FaultEvent(BaseModel):
    """One injected fault, as recorded in ``info["faults"]``."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    tool: str
    kind: FaultKind
    latency_s: float = 0.0
    detail: str = ""


class FaultInjection(ToolCallWrapper):
    """Wraps a ``ToolEnv`` so that its tool calls fail as configured.

    Args:
        env: The environment (a ``ToolEnv``, or another ``ToolCallWrapper``).
        config: The faults (a ``FaultConfig``, or a dict of its fields).
    """

    def __init__(self, env: ToolEnv | ToolCallWrapper, config: FaultConfig | dict[str, Any] | None = None):
        super().__init__(env)
        self.config = config if isinstance(config, FaultConfig) else FaultConfig.model_validate(config or {})

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult:
        """The wrapped env's call with this call's fault (recorded in ``ctx.faults``)."""
        if call.name not in ctx.tools:  # never reaches the service: nothing to inject
            return await super().call_tool(call, ctx)
        rng = random.Random(seed_from(seed_from(self.config.seed, ctx.episode_seed), ctx.position, call.id, call.name, call.arguments))
        spec = self.config.for_tool(call.name)
        kind, latency = _decide(spec, rng, _calls_so_far(call.name, ctx))
        if latency and kind is None:
            ctx.faults.append(FaultEvent(call_id=call.id, tool=call.name, kind="latency", latency_s=latency).model_dump())
        if latency:
            await loop_needed()
            await asyncio.sleep(latency)
        if kind is not None and kind in _REFUSALS:
            return _refuse(call, kind, latency, ctx)
        return _damage(call, await super().call_tool(call, ctx), kind, latency, rng, ctx)


def _calls_so_far(name: str, ctx: CallContext) -> int:
    """Calls of tool ``name`` in this turn up to and including the current one."""
    return sum(1 for c in ctx.calls[: ctx.index + 1] if c.name == name)


def _decide(spec: FaultSpec, rng: random.Random, nth_in_turn: int) -> tuple[FaultKind | None, float]:
    """The call's fault (None: none) and added latency, drawn in a fixed order from ``rng``."""
    latency = rng.uniform(*spec.latency_s) if spec.latency_s[1] > 0 else 0.0
    if spec.max_calls_per_turn is not None and nth_in_turn > spec.max_calls_per_turn:
        return "rate_limit", latency
    draw, edge = rng.random(), 0.0
    for kind in (*_REFUSALS, *_DAMAGE):
        edge += getattr(spec, kind)
        if draw < edge:
            return kind, latency
    return None, latency


_REFUSAL_TEXT: dict[FaultKind, tuple[ToolErrorKind, str]] = {
    "error": ("injected_fault", "503 Service Unavailable: {name!r} failed on the server side; the call was not carried out"),
    "timeout": ("timeout", "tool {name!r} did not finish within {timeout:g}s"),
    "rate_limit": ("rate_limited", "429 Too Many Requests: rate limit for {name!r} exceeded; retry later"),
}


def _refuse(call: ToolCall, kind: FaultKind, latency: float, ctx: CallContext) -> ToolResult:
    error_kind, template = _REFUSAL_TEXT[kind]
    message = template.format(name=call.name, timeout=ctx.timeout_s)
    ctx.faults.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail=message).model_dump())
    return error_result(call, error_kind, message)


def _damage(call: ToolCall, result: ToolResult, kind: FaultKind | None, latency: float, rng: random.Random, ctx: CallContext) -> ToolResult:
    if kind not in _DAMAGE or not result.ok:
        return result
    if kind == "malformed":
        text = _render(result.output)
        garbled = text[: rng.randint(0, max(0, len(text) - 1))] + "\ufffd"
        message = f"the service returned a malformed response that could not be read: {garbled[:200]!r}"
        ctx.faults.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail=message).model_dump())
        return error_result(call, "injected_fault", message)
    output = _partial(result.output, rng)
    ctx.faults.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail="output cut").model_dump())
    return result.model_copy(update={"output": output})


def _render(output: Any) -> str:
    try:
        return render_output(output)
    except (TypeError, ValueError):
        return repr(output)


def _partial(output: Any, rng: random.Random) -> Any:
    """``output`` with some fields (dict), items (list) or text (str) missing."""
    if isinstance(output, dict) and output:
        keep = sorted(rng.sample(sorted(output), k=rng.randint(0, len(output) - 1)))
        return {k: output[k] for k in keep}
    if isinstance(output, list) and output:
        return output[: rng.randint(0, len(output) - 1)]
    if isinstance(output, str) and output:
        return output[: len(output) // 2]
    return None
