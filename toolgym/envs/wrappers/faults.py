"""``FaultInjection``: seeded tool failures, so agents learn to cope with unreliable APIs.

Per tool (or for all), a call can be refused before it runs (``error`` -> ``injected_fault``,
``timeout`` -> ``timeout``, ``rate_limit`` -> ``rate_limited``, also deterministically past
``max_calls_per_turn``), or run and come back damaged (``malformed``: an unreadable body, an
``injected_fault`` error, although the call took effect; ``partial``: an output with parts
missing). ``latency_s`` adds real waiting. Every fault is an event in ``info["faults"]``.

Decisions are drawn from (episode seed, position in the conversation, call id, tool,
arguments), and the episode seed from the reset seed, so the same seed and actions give the
same faults, also after ``restore``; a call retried in a later turn draws afresh, even where
the model reuses its call ids (``call_0`` every turn).

>>> import toolgym
>>> env = FaultInjection(toolgym.make("toolgym/unitconv-v0"), FaultConfig(default=FaultSpec(error=1.0)))
>>> obs, info = env.reset(seed=0)
>>> obs, *_, info = env.step('<tool_call>{"name": "recall", "arguments": {"name": "x"}}</tool_call>')
>>> obs.messages[0].error, info["faults"][0]["kind"]
('injected_fault', 'error')
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from typing import Any, Literal

import gymnasium
from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.aio import loop_needed, run_sync
from toolgym.envs.canonical import seed_from
from toolgym.envs.dispatch import ToolBox, error_result, render_output
from toolgym.envs.types import ToolCall, ToolResult

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


class FaultyToolBox(ToolBox):
    """A tool box that injects faults around another box's calls."""

    def __init__(self, inner: ToolBox, config: FaultConfig, episode_seed: int):
        super().__init__(inner.tools.values(), default_timeout_s=inner.default_timeout_s)
        self.inner, self.config, self.episode_seed = inner, config, episode_seed
        self.events: list[FaultEvent] = []
        self._per_turn: Counter[str] = Counter()
        self._position = 0

    def begin_turn(self, position: int = 0) -> None:
        """Start a new turn at ``position`` (messages so far); per-turn rate limits restart."""
        self._per_turn.clear()
        self._position = position

    def drain(self) -> list[FaultEvent]:
        """The events since the last drain."""
        events, self.events = self.events, []
        return events

    async def acall(self, call: ToolCall) -> ToolResult:
        """The inner box's call with this call's faults (``call`` is the inherited sync edge)."""
        kind, latency, rng = self._decide(call)
        if latency:
            await loop_needed()
            await asyncio.sleep(latency)
        if kind in _REFUSALS:
            return self._refuse(call, kind, latency)
        return self._damage(call, await self.inner.acall(call), kind, latency, rng)

    def _decide(self, call: ToolCall) -> tuple[FaultKind | None, float, random.Random]:
        rng = random.Random(seed_from(self.episode_seed, self._position, call.id, call.name, call.arguments))
        if call.name not in self.tools:  # never reaches the service: nothing to inject
            return None, 0.0, rng
        spec = self.config.for_tool(call.name)
        self._per_turn[call.name] += 1
        latency = rng.uniform(*spec.latency_s) if spec.latency_s[1] > 0 else 0.0
        if spec.max_calls_per_turn is not None and self._per_turn[call.name] > spec.max_calls_per_turn:
            return "rate_limit", latency, rng
        draw, edge = rng.random(), 0.0
        for kind in (*_REFUSALS, *_DAMAGE):
            edge += getattr(spec, kind)
            if draw < edge:
                return kind, latency, rng
        if latency:
            self.events.append(FaultEvent(call_id=call.id, tool=call.name, kind="latency", latency_s=latency))
        return None, latency, rng

    def _refuse(self, call: ToolCall, kind: FaultKind, latency: float) -> ToolResult:
        messages = {
            "error": ("injected_fault", f"503 Service Unavailable: {call.name!r} failed on the server side; the call was not carried out"),
            "timeout": ("timeout", f"tool {call.name!r} did not finish within {self.default_timeout_s:g}s"),
            "rate_limit": ("rate_limited", f"429 Too Many Requests: rate limit for {call.name!r} exceeded; retry later"),
        }
        error_kind, message = messages[kind]
        self.events.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail=message))
        return error_result(call, error_kind, message)  # type: ignore[arg-type]  # kind is one of the refusal kinds, all ToolErrorKind values

    def _damage(self, call: ToolCall, result: ToolResult, kind: FaultKind | None, latency: float, rng: random.Random) -> ToolResult:
        if kind not in _DAMAGE or not result.ok:
            return result
        if kind == "malformed":
            text = _render(result.output)
            garbled = text[: rng.randint(0, max(0, len(text) - 1))] + "\ufffd"
            message = f"the service returned a malformed response that could not be read: {garbled[:200]!r}"
            self.events.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail=message))
            return error_result(call, "injected_fault", message)
        output = _partial(result.output, rng)
        self.events.append(FaultEvent(call_id=call.id, tool=call.name, kind=kind, latency_s=latency, detail="output cut"))
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


class FaultInjection(gymnasium.Wrapper):
    """Wraps a ``ToolEnv`` so that its tool calls fail as configured.

    Args:
        env: The environment (a ``ToolEnv``, possibly wrapped).
        config: The faults (a ``FaultConfig``, or a dict of its fields).
    """

    def __init__(self, env: gymnasium.Env, config: FaultConfig | dict[str, Any] | None = None):
        super().__init__(env)
        self.config = config if isinstance(config, FaultConfig) else FaultConfig.model_validate(config or {})
        self.box: FaultyToolBox | None = None
        self.episode_seed = 0
        self._last_seed: int | None = None
        self._unseeded_resets = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        # Like gymnasium's RNG: reset(seed=s) then reset() ... repeats; never seeded, fresh faults.
        if seed is not None:
            self._last_seed, self._unseeded_resets = seed, 0
            self.episode_seed = seed_from(self.config.seed, seed)
        elif self._last_seed is not None:
            self._unseeded_resets += 1
            self.episode_seed = seed_from(self.config.seed, self._last_seed, self._unseeded_resets)
        else:
            self.episode_seed = int.from_bytes(os.urandom(8), "big")
        self._install()
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """``astep`` from sync code."""
        return run_sync(self.astep(action))

    async def astep(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the wrapped env with this turn's faults; ``info["faults"]`` lists them."""
        box = self._installed()
        box.begin_turn(len(self._base().messages))  # restored with the world, unlike a counter here
        obs, reward, terminated, truncated, info = await self.env.astep(action)  # type: ignore[attr-defined]  # the wrapped env is a ToolEnv or a toolgym wrapper
        info["faults"] = [e.model_dump() for e in box.drain()]
        return obs, reward, terminated, truncated, info

    def restore(self, snap: Any) -> None:
        """Restore the wrapped env; faults keep the episode seed, so they repeat after a restore."""
        self.env.restore(snap)  # type: ignore[attr-defined]  # the wrapped env is a ToolEnv or a toolgym wrapper
        self._install()

    def _base(self) -> Any:
        """The wrapped ``ToolEnv`` (gymnasium types ``unwrapped`` as a plain ``Env``)."""
        return self.env.unwrapped

    def _install(self) -> FaultyToolBox:
        base = self._base()
        inner = base.toolbox.inner if isinstance(base.toolbox, FaultyToolBox) else base.toolbox
        self.box = base.toolbox = FaultyToolBox(inner, self.config, self.episode_seed)
        return self.box

    def _installed(self) -> FaultyToolBox:
        base = self._base()
        if self.box is None or base.toolbox is not self.box:  # the env rebuilt its box (restore, reset inside)
            return self._install()
        return self.box

    # The rest of the ToolEnv surface, so a wrapped env works wherever a ToolEnv does.
    def snapshot(self) -> Any:
        return self.env.snapshot()  # type: ignore[attr-defined]  # the wrapped env is a ToolEnv or a toolgym wrapper

    def state_digest(self) -> str:
        return self.env.state_digest()  # type: ignore[attr-defined]  # the wrapped env is a ToolEnv or a toolgym wrapper

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "env":  # "env" is missing only while __init__ runs
            raise AttributeError(name)
        return getattr(self.env, name)
