"""``ToolCallWrapper``: the base of wrappers that change what a tool call does.

Every tool call of a ``ToolEnv`` goes through one async method, ``call_tool(call, ctx)``. A
wrapper subclasses ``ToolCallWrapper`` and overrides that method only; everything else (reset,
step, snapshots, digests, attribute reads) passes through to the wrapped env. Wrappers nest:
the outermost ``call_tool`` is handed down to the base env's ``astep``, and each wrapper's
``super().call_tool`` reaches the next one in.

>>> import toolgym
>>> from toolgym.envs.dispatch import error_result
>>> class NoStore(ToolCallWrapper):
...     async def call_tool(self, call, ctx):
...         if call.name == "store":
...             return error_result(call, "policy_violation", "storing is switched off")
...         return await super().call_tool(call, ctx)
>>> env = NoStore(toolgym.make("toolgym/unitconv-v0"))
>>> _ = env.reset(seed=0)
>>> obs, *_ = env.step('<tool_call>{"name": "store", "arguments": {"name": "x", "value": 1}}</tool_call>')
>>> obs.messages[0].error
'policy_violation'
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium

from toolgym.aio import run_sync
from toolgym.envs.dispatch import CallContext, CallTool
from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.envs.types import Observation, ToolCall, ToolResult

StepOut = tuple[Observation, float, bool, bool, dict[str, Any]]


class SteppableEnv(Protocol):
    """What a ``ToolCallWrapper`` wraps: a ``ToolEnv`` or another ``ToolCallWrapper``."""

    async def astep(self, action: Any, *, call_tool: CallTool | None = None) -> StepOut: ...

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult: ...

    def snapshot(self) -> EnvSnapshot: ...

    def restore(self, snap: EnvSnapshot) -> None: ...

    def state_digest(self) -> str: ...


class ToolCallWrapper(gymnasium.Wrapper):
    """Wraps a ``ToolEnv`` (or another tool-call wrapper); subclasses override ``call_tool``.

    Args:
        env: The environment to wrap.

    Raises:
        TypeError: ``env`` is neither a ``ToolEnv`` nor a ``ToolCallWrapper``.
    """

    def __init__(self, env: ToolEnv | ToolCallWrapper):
        if not isinstance(env, (ToolEnv, ToolCallWrapper)):
            raise TypeError(
                f"{type(self).__name__} wraps a toolgym ToolEnv or another ToolCallWrapper, got {type(env).__name__}; "
                "apply tool-call wrappers first, other gymnasium wrappers outside them"
            )
        super().__init__(env)
        self.inner: SteppableEnv = env
        """The wrapped env, typed for what this wrapper calls on it."""

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult:
        """Run one tool call; the default hands it to the wrapped env unchanged."""
        return await self.inner.call_tool(call, ctx)

    def step(self, action: Any) -> StepOut:
        """``astep`` from sync code."""
        return run_sync(self.astep(action))

    async def astep(self, action: Any, *, call_tool: CallTool | None = None) -> StepOut:
        """Step the wrapped env with the outermost wrapper's ``call_tool`` for every call."""
        return await self.inner.astep(action, call_tool=call_tool or self.call_tool)

    def snapshot(self) -> EnvSnapshot:
        """The wrapped env's snapshot."""
        return self.inner.snapshot()

    def restore(self, snap: EnvSnapshot) -> None:
        """Restore the wrapped env."""
        self.inner.restore(snap)

    def state_digest(self) -> str:
        """The wrapped env's world digest."""
        return self.inner.state_digest()

    def __getattr__(self, name: str) -> Any:
        # The rest of the ToolEnv surface (stop_reason, messages, world, ...) reads through.
        if name.startswith("_") or name in ("env", "inner"):  # missing only while __init__ runs
            raise AttributeError(name)
        return getattr(self.env, name)
