"""The batched policy protocol: many conversations in, one assistant turn out for each.

A top-level module because both layers use it: rollouts drive a policy, and environments
use one to play tool simulators and users. ``toolgym.policy`` re-exports it.

A policy is anything with ``async def generate(requests) -> turns``. The rollout loop gathers
the requests of every live episode into one call, so a local model can run them as one batch
and an HTTP client can send them concurrently. Policies never raise for a single bad request:
they return a ``PolicyTurn`` with ``error`` set, and the loop ends that episode as a policy
failure while the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.types import Message, ToolSpec


class SamplingParams(BaseModel):
    """How to sample one assistant turn."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    """0 means greedy."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    """Extra stop strings; a policy also stops at its end-of-turn token."""


class PolicyRequest(BaseModel):
    """One conversation waiting for its next assistant turn."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str
    task_id: str | None = None
    """The task being worked on (lets scripted policies and logs route by task)."""
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    seed: int
    """Per-request seed: the same seed gives the same turn whatever the batch around it."""
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    prefix_token_ids: list[int] | None = None
    """The previous turn's prompt ids followed by its sampled ids (the rollout loop fills it).
    A token-level policy continues from these ids plus only the new messages' tokens, so
    nothing the model generated is re-tokenized (see ``toolgym.rollouts.rows``)."""
    prefix_messages: int = Field(default=0, ge=0)
    """How many leading ``messages`` ``prefix_token_ids`` covers; the rest are new."""


PolicyErrorKind = Literal[
    "context_overflow",  # the prompt does not fit the model's context
    "endpoint_error",  # HTTP failure, refused connection, 5xx after retries
    "timeout",
    "bad_response",  # the server answered something unreadable
    "model_error",  # the local model raised
]


class PolicyError(BaseModel):
    """Why a policy produced no turn for a request. Infrastructure, not the model's fault."""

    kind: PolicyErrorKind
    message: str


class PolicyTurn(BaseModel):
    """One generated assistant turn, token-faithful when the policy has tokens."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    prompt_token_ids: list[int] | None = None
    """Token ids of the rendered prompt the turn was generated from."""
    token_ids: list[int] | None = None
    """Exactly the generated ids, end-of-turn token included when one was sampled."""
    logprobs: list[float] | None = None
    """Behaviour log-probability of each generated id (same length as ``token_ids``)."""
    finish_reason: Literal["stop", "length", "error"] = "stop"
    error: PolicyError | None = None
    routed_experts: list[list[list[int]]] | None = None
    """MoE policies recording routing: per generated id, per MoE layer, the top-k expert ids of
    the forward position that sampled it (for routing replay; see ``toolgym.policies.routing``)."""


@runtime_checkable
class Policy(Protocol):
    """Anything that turns a batch of conversations into assistant turns."""

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        """Return one turn per request, in order. Failures are turns with ``error`` set."""
        ...
