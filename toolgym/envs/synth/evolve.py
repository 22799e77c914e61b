"""Tool-spec evolution: proposers write tools for jobs, validation and dedup decide what is kept.

A proposer turns ``EvolveJob``s into OpenAI tool dicts. ``FallbackProposer`` is the
deterministic ``operators.realize``; ``PolicyProposer`` asks any ``Policy`` (an OpenAI-compatible
endpoint, ``toolgym serve``, a scripted one) for the tool as JSON, and counts every reply that is
empty or garbage as a typed failure before the fallback fills in (unless told not to).
``validate`` compiles a proposal like an environment would; ``Deduper`` drops a tool whose name
is taken or whose parameters are too similar to a kept tool on the same entity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.aio import loop_needed
from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import canonical_json
from toolgym.envs.sim.schema import SchemaError
from toolgym.envs.sim.spec import CompiledTool, SimTool, compile_tool, split_name
from toolgym.envs.synth.llm import parse_json
from toolgym.envs.synth.operators import EvolveJob, realize
from toolgym.envs.synth.records import FailureKind, ItemFailure, ToolRecord
from toolgym.envs.synth.taxonomy import Taxonomy
from toolgym.envs.types import JsonDict, SystemMessage, UserMessage
from toolgym.policy import Policy, PolicyRequest, SamplingParams

STAGE = "tools"
SYSTEM = "You design tools (functions) for AI assistants. Reply with one JSON object and nothing else."


class Proposal(BaseModel):
    """What a proposer made of one job: a tool dict (or none), and the failures on the way."""

    model_config = ConfigDict(extra="forbid")

    job: EvolveJob
    tool: JsonDict | None = None
    domain: str = ""
    entity: str = ""
    source: str = "fallback"
    failures: list[ItemFailure] = Field(default_factory=list)
    tokens: int = 0
    """Tokens the policy spent on this job (prompt and completion, where it reports them)."""


class FallbackProposer:
    """The deterministic operators, no model."""

    name = "fallback"

    async def propose(self, jobs: Sequence[EvolveJob], taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> list[Proposal]:
        """One proposal per job, in order."""
        return [_fallback(job, taxonomy, parents) for job in jobs]


def _fallback(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord], failures: list[ItemFailure] | None = None) -> Proposal:
    try:
        tool, domain, entity = realize(job, taxonomy, parents)
    except (KeyError, ValueError, IndexError) as exc:  # a parent or entity the job names is missing or empty
        failure = ItemFailure(stage=STAGE, item=job.key, kind="malformed_input", message=f"{job.operator}: {exc}"[:300])
        return Proposal(job=job, failures=[*(failures or []), failure])
    return Proposal(job=job, tool=tool, domain=domain, entity=entity, source="fallback", failures=failures or [])


class PolicyProposer:
    """A policy writes each tool; empty or garbage replies are counted, then the fallback writes it.

    Args:
        policy: Any ``Policy``.
        seed: Seeds the requests.
        sampling: Sampling of the replies.
        fallback: Let the deterministic operators fill in after a failed reply (else the job is dropped).
    """

    name = "policy"

    def __init__(self, policy: Policy, *, seed: int = 0, sampling: SamplingParams | None = None, fallback: bool = True):
        self.policy = policy
        self.seed = seed
        self.sampling = sampling or SamplingParams(temperature=0.7, max_new_tokens=512)
        self.fallback = fallback

    async def propose(self, jobs: Sequence[EvolveJob], taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> list[Proposal]:
        """One batched request for all jobs; each reply parsed and checked on its own."""
        requests = [
            PolicyRequest(episode_id=f"synth/tools/{job.key}", messages=[SystemMessage(content=SYSTEM), UserMessage(content=job_prompt(job, taxonomy, parents))],
                          seed=seed_from(self.seed, "propose", job.key) >> 1, sampling=self.sampling)
            for job in jobs
        ]
        await loop_needed()  # run from sync code (a shard) this needs an event loop: say so first
        try:
            turns: list[Any] = list(await self.policy.generate(requests))
        except Exception as exc:  # a policy should not raise; if it does, every reply of the batch is missing
            turns = [exc] * len(jobs)
        if len(turns) != len(jobs):
            turns = [ValueError(f"the policy returned {len(turns)} replies for {len(jobs)} requests")] * len(jobs)
        return [self._read(job, turn, taxonomy, parents) for job, turn in zip(jobs, turns, strict=True)]

    def _read(self, job: EvolveJob, turn: Any, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> Proposal:
        tokens = len(getattr(turn, "token_ids", None) or []) + len(getattr(turn, "prompt_token_ids", None) or [])
        kind, message, tool = _reply_tool(turn)
        if tool is not None:
            domain, entity = _placed(job)
            return Proposal(job=job, tool=tool, domain=domain, entity=entity, source="policy", tokens=tokens)
        failure = ItemFailure(stage=STAGE, item=job.key, kind=kind, message=message)
        if self.fallback:
            return _fallback(job, taxonomy, parents, [failure]).model_copy(update={"tokens": tokens})
        return Proposal(job=job, failures=[failure], tokens=tokens)


def _placed(job: EvolveJob) -> tuple[str, str]:
    if job.operator == "neighbour_variant":
        return job.target_domain, job.target_entity
    return job.domain, job.entity


def _reply_tool(turn: Any) -> tuple[FailureKind, str, JsonDict | None]:
    """(failure kind, message, None) for an unusable reply, else the tool dict it holds."""
    if isinstance(turn, Exception):
        return "no_answer", f"{type(turn).__name__}: {turn}"[:300], None
    if turn.error is not None:
        return "no_answer", f"policy error ({turn.error.kind}): {turn.error.message}"[:300], None
    if not turn.text.strip():
        return "no_answer", "the reply was empty", None
    try:
        value = parse_json(turn.text)
    except ValueError as exc:
        return "garbage_answer", f"{exc}; reply began {turn.text[:80]!r}", None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return "garbage_answer", 'expected {"name": ..., "description": ..., "parameters": {...}}', None
    tool: JsonDict = {"type": "function", "function": {k: value[k] for k in ("name", "description", "parameters") if k in value}}
    if isinstance(value.get("returns"), dict):
        tool["returns"] = value["returns"]
    return "garbage_answer", "", tool


def job_prompt(job: EvolveJob, taxonomy: Taxonomy, parents: dict[str, ToolRecord]) -> str:
    """What the policy is asked for one job (the operator stated, the parents shown)."""
    shown = "\n".join(f"- {json.dumps(parents[n].tool.spec.model_dump(mode='json'))}" for n in job.parents if n in parents)
    what = {
        "new_operation": f"a new '{job.verb}' operation on the entity '{job.entity}' of the '{job.domain}' domain",
        "new_parameter": f"a variant of the tool below that also takes (or constrains) a '{job.field}' parameter",
        "neighbour_variant": f"a variant of the tool below for the neighbouring domain '{job.target_domain}' (entity '{job.target_entity}')",
        "composition": "one tool that does both tools below in a single call",
    }[job.operator]
    return (f"Design {what}.\n" + (f"Existing tools:\n{shown}\n" if shown else "")
            + 'Reply as {"name": "snake_case_name", "description": "...", "parameters": {"type": "object", "properties": {...}, '
            '"required": [...]}, "returns": {JSON Schema of the output}}.')


_COMPILED: dict[str, CompiledTool] = {}
MAX_COMPILED = 50_000


def compile_cached(tool: SimTool) -> CompiledTool:
    """``compile_tool``, remembered per process by the tool's JSON (compiling is the costly part of a stage).

    Raises:
        SchemaError: as ``compile_tool``.
    """
    key = tool.model_dump_json(exclude_none=True)
    hit = _COMPILED.get(key)
    if hit is None:
        hit = compile_tool(tool)
        if len(_COMPILED) >= MAX_COMPILED:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = hit
    return hit


def validate(proposal: Proposal, generation: int) -> ToolRecord | ItemFailure:
    """The proposal as a kept-able ``ToolRecord``, or why not (``invalid_spec``)."""
    if proposal.tool is None:
        return proposal.failures[-1] if proposal.failures else ItemFailure(stage=STAGE, item=proposal.job.key, kind="no_answer")
    try:
        # Keys sorted as the cache stores them: the record compiled here is the one read back later.
        tool = SimTool.coerce(json.loads(canonical_json(proposal.tool)))
        compile_cached(tool)
    except SchemaError as exc:
        return ItemFailure(stage=STAGE, item=proposal.job.key, kind="invalid_spec", message=str(exc)[:300])
    return ToolRecord(tool=tool, domain=proposal.domain, entity=proposal.entity, operator=proposal.job.operator,
                      parents=proposal.job.parents, source="policy" if proposal.source == "policy" else "fallback", generation=generation)


def param_signature(parameters: JsonDict) -> frozenset[str]:
    """One token per parameter: name, type, required, constraint keywords (what similarity compares)."""
    props = parameters.get("properties", {}) if isinstance(parameters, dict) else {}
    required = set(parameters.get("required", [])) if isinstance(parameters, dict) else set()
    tokens = set()
    for name, schema in props.items():
        schema = schema if isinstance(schema, dict) else {}
        keys = ",".join(sorted(k for k in schema if k not in ("type", "description", "title")))
        tokens.add(f"{name}:{schema.get('type', '?')}:{int(name in required)}:{keys}")
    return frozenset(tokens)


def schema_shape(parameters: JsonDict) -> str:
    """The parameters' structure with names left out (types and required flags, sorted): diversity's unit."""
    sig = sorted(t.split(":", 1)[1] for t in param_signature(parameters))
    return "|".join(sig)


class Deduper:
    """Keeps names unique and drops a tool too similar to a kept one on the same entity and verb.

    Args:
        threshold: Jaccard similarity of parameter signatures at or above which two tools are the same.
    """

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold
        self.names: set[str] = set()
        self.buckets: dict[tuple[str, str], list[frozenset[str]]] = {}

    def reason(self, record: ToolRecord) -> str | None:
        """Why ``record`` duplicates a kept tool, or None."""
        if record.name in self.names:
            return f"the name {record.name!r} is taken"
        sig = param_signature(record.parameters)
        for other in self.buckets.get(self._bucket(record), []):
            union = len(sig | other)
            if union and len(sig & other) / union >= self.threshold:
                return f"{record.name!r}: its parameters match a kept tool on {record.entity!r} (similarity >= {self.threshold:g})"
        return None

    def add(self, record: ToolRecord) -> None:
        """Keep ``record`` (call after ``reason`` says it is new)."""
        self.names.add(record.name)
        self.buckets.setdefault(self._bucket(record), []).append(param_signature(record.parameters))

    @staticmethod
    def _bucket(record: ToolRecord) -> tuple[str, str]:
        words = split_name(record.name)
        return record.entity, words[0] if words else ""
