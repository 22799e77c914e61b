"""What a tool simulator is, and the errors that say a tool backend (not the agent) failed.

A simulator computes the output of a tool known only by its schema. It reads and writes a
``SimState`` that lives in the environment's world, so snapshots, restores and state digests
cover everything the simulator remembers. It raises ``SimulatorError`` when it cannot produce
a schema-valid output (infrastructure), and an ordinary exception (``LookupError``,
``ValueError``) for an API error the agent caused, such as reading an id that does not exist.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.sim.state import SimState
from toolgym.errors import EnvError, ToolgymError


class BackendError(EnvError):
    """The thing that computes tool outputs (a simulator, an MCP server) failed.

    Args:
        message: What failed, written so it also reads well as a tool result for the model.
        fatal: The backend is gone for the rest of the episode (the episode ends as ``env_error``).
    """

    def __init__(self, message: str, *, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class SimulatorError(BackendError):
    """A simulator produced no usable output (broken JSON, schema mismatch, its policy failed)."""


class SimulatedApiError(ToolgymError):
    """The simulated API refused the call, as the real one would (the agent's doing)."""


@runtime_checkable
class Simulator(Protocol):
    """Computes tool outputs from schemas, arguments and the simulated state.

    ``asimulate`` is the one implementation; ``simulate`` is its sync edge
    (``return toolgym.aio.run_sync(self.asimulate(...))``). ``is_async`` says whether it really
    waits (a policy): such simulators run as async tools; the others as sync tools under the
    watchdog, with no event loop. Code that waits on asyncio first awaits
    ``toolgym.aio.loop_needed()``.
    """

    is_async: bool

    def simulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """``asimulate`` from sync code."""
        ...

    async def asimulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """The tool's output; may update ``state``. Raises ``SimulatorError`` on broken output."""
        ...
