"""``SimState``: everything a simulated API remembers, kept in the environment's world.

Because it is the world, ``state_digest()`` hashes it, ``snapshot()``/``restore()`` fork it,
and an LLM simulator's cache key includes its digest. A task's ``initial_state`` seeds it with
entities (collection -> id -> record) and free ``data`` for the simulators to read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.envs.types import JsonDict
from toolgym.errors import ConfigError

INITIAL_KEYS = ("entities", "data")


class CallRecord(BaseModel):
    """One simulated call as later calls (and an LLM simulator) see it."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: JsonDict = Field(default_factory=dict)
    output: Any = None
    error: str | None = None
    """The API error the call got (an agent mistake such as an unknown id), if any."""


class SimState(BaseModel):
    """The simulated world of one episode."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    """Drawn from the reset seed; every generated value derives from it."""
    entities: dict[str, dict[str, JsonDict]] = Field(default_factory=dict)
    """Records by collection and id: what create calls wrote and reads return."""
    memo: dict[str, Any] = Field(default_factory=dict)
    """Outputs of entity-free calls by argument digest, so asking twice gives the same answer."""
    data: JsonDict = Field(default_factory=dict)
    """Free-form facts from the task for the simulators (an LLM simulator reads them)."""
    log: list[CallRecord] = Field(default_factory=list)
    """Every simulated call of the episode, in order."""

    @classmethod
    def from_task_state(cls, initial_state: JsonDict, seed: int) -> SimState:
        """Build the start state from ``Task.initial_state`` (keys ``entities`` and ``data``).

        Raises:
            ConfigError: a key other than ``entities``/``data``, or records of the wrong shape.
        """
        unknown = sorted(set(initial_state) - set(INITIAL_KEYS))
        if unknown:
            raise ConfigError(
                f"task.initial_state has unknown key(s) {unknown} for a simulated environment; it holds "
                "'entities' ({collection: {id: record}}) and 'data' (free facts); move other facts under 'data'"
            )
        try:
            return cls(seed=seed, **initial_state)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"task.initial_state.{where}: {first['msg']}; entities must look like "
                "{'note': {'n1': {'title': '...'}}}"
            ) from None
