"""Plain records of the data engine: tools with their lineage, and typed item failures.

Every stage of ``toolgym synth`` writes these as JSON lines, so a stage's cache is readable
with ``jq`` and a resumed run reads exactly what an uninterrupted one kept in memory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.sim.spec import SimTool
from toolgym.envs.types import JsonDict

Operator = Literal["seed", "new_operation", "new_parameter", "neighbour_variant", "composition"]
"""How a tool came to be: imported as a seed, or one of the evolution operators."""

FailureKind = Literal[
    "malformed_input",  # a taxonomy, seed spec or config item that does not parse
    "hostile_input",  # a document refused by the limits (recursive refs, huge enums, slow patterns)
    "no_answer",  # the policy gave nothing (error, empty reply)
    "garbage_answer",  # the policy's reply is not the JSON asked for
    "invalid_spec",  # a proposed tool whose schemas do not compile or cannot be simulated
    "duplicate",  # a proposed tool equal or too similar to one already kept
    "gold_replay_failed",  # a task whose gold actions fail in its own environment
    "episode_failed",  # a trajectory that ended on an infrastructure failure
    "judge_failed",  # the judge gave no usable verdict
    "below_threshold",  # judged, and not good enough to keep
]
"""Why an item was dropped; the report counts each kind per stage."""


class ItemFailure(BaseModel):
    """One dropped item: which stage, which item, why (a kind the report counts, and the detail)."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    item: str
    kind: FailureKind
    message: str = ""


class ToolRecord(BaseModel):
    """A tool in the synthesized tool set, with where it sits in the taxonomy and where it came from."""

    model_config = ConfigDict(extra="forbid")

    tool: SimTool
    domain: str
    entity: str
    """The taxonomy entity the tool works on (its neighbours in the tool graph share it)."""
    operator: Operator
    parents: list[str] = Field(default_factory=list)
    """Names of the tools it was evolved from."""
    source: Literal["seed", "fallback", "policy"] = "fallback"
    generation: int = 0

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def parameters(self) -> JsonDict:
        return self.tool.spec.function.parameters
