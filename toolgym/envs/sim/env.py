"""``SimulatedToolEnv``: an environment whose tools exist only as schemas, answered by a simulator.

>>> from toolgym.envs.sim import SimulatedToolEnv
>>> spec = {"type": "function", "function": {"name": "create_note", "description": "Create a note.",
...         "parameters": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}
>>> env = SimulatedToolEnv([spec])
>>> obs, info = env.reset(seed=0)
>>> [t.name for t in obs.tools]
['create_note']

The simulated world (a ``SimState``) is the environment's world: digests, snapshots and
restores cover it. Simulator failures come back as ``simulator_error`` results, counted in
``info["errors"]`` and in ``simulator_errors``; with ``max_simulator_errors`` set, an episode
that has more ends as ``env_error`` (unscorable) instead of going on with a broken world.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolgym.aio import run_sync
from toolgym.envs.env import ToolEnv
from toolgym.envs.sim.base import BackendError, Simulator, SimulatorError
from toolgym.envs.sim.box import BackendToolBox, acatch_backend, catch_backend, schema_tool, tool_owner
from toolgym.envs.sim.schema_sim import SchemaSimulator
from toolgym.envs.sim.spec import CompiledTool, SimTool, compile_tool
from toolgym.envs.sim.state import CallRecord, SimState
from toolgym.envs.sim.text import invalid_text_at
from toolgym.envs.tools import Tool
from toolgym.envs.types import Observation, StopReason, Task, ToolSpec
from toolgym.envs.users.base import SimulatedUser
from toolgym.errors import ConfigError

SYSTEM_PROMPT = "You are a helpful assistant with access to an API. Use the tools to do what the user asks, then answer briefly."


def broken_text(tool: str, value: Any, what: str) -> None:
    """Refuse a simulator's output (or error message) holding text UTF-8 cannot carry.

    Raises:
        SimulatorError: a lone surrogate somewhere in ``value`` (broken output, like a schema mismatch).
    """
    where = invalid_text_at(value, root=what)
    if where is not None:
        raise SimulatorError(f"the simulator's answer to {tool!r} is unusable: {where} holds a lone surrogate (not valid Unicode text)")


class SimulatedToolEnv(ToolEnv):
    """Tools known only by schema, answered by a ``Simulator``.

    Args:
        tools: ``SimTool``s, ``ToolSpec``s or OpenAI tool dicts (with an optional ``returns`` schema),
            or ``CompiledTool``s (compiled once and shared by many environments).
        simulator: Computes outputs (default: ``SchemaSimulator()``).
        tasks: Tasks to draw from; without them, tasks are synthesized from the schemas.
        tool_format: How assistant text encodes tool calls.
        user: Simulated user (None: solo).
        simulator_timeout_s: Deadline of one simulated call (default: the task's tool deadline).
        max_simulator_errors: Simulator failures an episode tolerates before it ends as ``env_error``.
        system_prompt: Default system prompt.

    Raises:
        SchemaError: a tool's schemas do not compile (named, with the fix).
        ConfigError: two tools share a name.
    """

    def __init__(
        self,
        tools: Sequence[SimTool | ToolSpec | CompiledTool | dict[str, Any]],
        simulator: Simulator | None = None,
        *,
        tasks: Sequence[Task] | None = None,
        tool_format: str = "hermes",
        user: SimulatedUser | None = None,
        simulator_timeout_s: float | None = None,
        max_simulator_errors: int | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        render_mode: str | None = None,
    ):
        super().__init__(tool_format=tool_format, tasks=tasks, render_mode=render_mode, user=user)
        self.simulator: Simulator = simulator if simulator is not None else SchemaSimulator()
        self.system_prompt = system_prompt  # type: ignore[misc]  # per instance, not per class
        self.compiled: dict[str, CompiledTool] = {}
        for raw in tools:
            compiled = raw if isinstance(raw, CompiledTool) else compile_tool(SimTool.coerce(raw))
            if compiled.name in self.compiled:
                raise ConfigError(f"two simulated tools are named {compiled.name!r}; tool names must be unique")
            self.compiled[compiled.name] = compiled
        self.simulator_timeout_s = simulator_timeout_s
        self.max_simulator_errors = max_simulator_errors
        self.simulator_errors = 0
        """Simulator failures in the current episode."""
        self.world: SimState = SimState()
        self._owner = tool_owner({name: self._make_tool(c) for name, c in self.compiled.items()})

    @property
    def tool_specs(self) -> list[SimTool]:
        """The simulated tools, as given."""
        return [c.tool for c in self.compiled.values()]

    # ------------------------------------------------------------------ ToolEnv hooks

    def setup(self, task: Task) -> None:
        self.world = SimState.from_task_state(task.initial_state, seed=int(self.np_random.integers(2**62)))

    def sample_task(self, rng: np.random.Generator) -> Task:
        if self.tasks:
            return super().sample_task(rng)
        from toolgym.envs.synth.fallback import FallbackSynthesizer  # synth builds on sim, not the reverse

        return FallbackSynthesizer(seed=int(rng.integers(2**31))).tasks(list(self.compiled.values()), n=1)[0]

    def world_state(self) -> Any:
        return self.world.model_dump(mode="json")

    def load_world(self, state: Any) -> None:
        self.world = SimState.model_validate(state)

    def tool_owners(self) -> list[Any]:
        return [self._owner]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self.simulator_errors = 0
        # ToolEnv builds a plain ToolBox; this one turns backend failures into simulator_error.
        self.toolbox = BackendToolBox(
            self.toolbox.tools.values(), default_timeout_s=self.toolbox.default_timeout_s,
            on_failure=self._on_backend_failure, timeouts_are_backend=True,
        )
        return obs, info

    # ------------------------------------------------------------------ simulation

    def _make_tool(self, compiled: CompiledTool) -> Tool:
        async def arun(**arguments: Any) -> Any:
            try:
                output = await self.simulator.asimulate(compiled, arguments, self.world)
            except BackendError:
                raise
            except Exception as exc:
                broken_text(compiled.name, str(exc), "its error message")
                self._log_error(compiled, arguments, exc)
                raise
            broken_text(compiled.name, output, "output")
            return self._log(compiled, arguments, output)

        if self.simulator.is_async:
            return schema_tool(compiled.tool.spec, acatch_backend(arun), is_async=True, timeout_s=self.simulator_timeout_s)

        # A simulator that never waits runs as a sync tool (deadline by the watchdog, no event loop).
        def run(**arguments: Any) -> Any:
            return run_sync(arun(**arguments))

        return schema_tool(compiled.tool.spec, catch_backend(run), timeout_s=self.simulator_timeout_s)

    def _log(self, compiled: CompiledTool, arguments: dict[str, Any], output: Any) -> Any:
        self.world.log.append(CallRecord(tool=compiled.name, arguments=arguments, output=output))
        return output

    def _log_error(self, compiled: CompiledTool, arguments: dict[str, Any], exc: Exception) -> None:
        # An API error (unknown id) is part of the history the agent made; a backend failure is
        # not logged, so a retry meets the same state (and the same cache key).
        if not isinstance(exc, BackendError):
            self.world.log.append(CallRecord(tool=compiled.name, arguments=arguments, error=f"{type(exc).__name__}: {exc}"))

    def _on_backend_failure(self, error: BackendError) -> None:
        self.simulator_errors += 1
        limit = self.max_simulator_errors
        if error.fatal or (limit is not None and self.simulator_errors > limit):
            self._stop = StopReason.ENV_ERROR
