"""Asking a judge model one question: budget, deadline, retries, typed failure, token cost.

Shared by ``LLMJudge`` and ``PairwiseCritic`` so that both treat failures the same way: a
timeout, an endpoint error and an unreadable answer each end as their own ``Unscorable`` kind.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from toolgym.envs.types import Message
from toolgym.policy import Policy, PolicyRequest, SamplingParams
from toolgym.rubrics.critics.budget import JudgeBudget
from toolgym.rubrics.critics.parse import JudgementParseError
from toolgym.rubrics.score import ComponentCost, Unscorable

T = TypeVar("T")


@dataclass
class Asked(Generic[T]):
    """What asking produced: a parsed value (possibly partial) or the last failure, and the cost."""

    value: T | None
    failure: Unscorable | None
    cost: ComponentCost


@dataclass(frozen=True)
class Question(Generic[T]):
    """One question for a judge model and how to read its answer."""

    request_id: str
    messages: list[Message]
    parse: Callable[[str], T]
    """Raises ``JudgementParseError`` when the answer holds no valid judgement."""
    complete: Callable[[T], bool]
    """False when the answer is valid but partial (worth another attempt)."""


async def ask(policy: Policy, budget: JudgeBudget, question: Question[T], *, critic: str, seed: int, sampling: SamplingParams, retries: int) -> Asked[T]:
    """Ask until a complete answer or ``retries`` more attempts are spent.

    The last partial answer wins over later failures; with no answer at all, the last failure
    (``judge_timeout``, ``judge_error`` or ``judge_unparseable``) is returned.
    """
    cost = ComponentCost(name=f"critic:{critic}")
    best: T | None = None
    failure: Unscorable | None = None
    start = time.perf_counter()
    attempts = retries + 1
    for attempt in range(attempts):
        tag = f"{critic}: attempt {attempt + 1}/{attempts}"
        request = PolicyRequest(episode_id=f"{question.request_id}-{attempt}", messages=question.messages, seed=seed + attempt, sampling=sampling)
        try:
            turns = await budget.run(functools.partial(policy.generate, [request]))
        except TimeoutError:
            cost.calls += 1
            failure = Unscorable(kind="judge_timeout", message=f"{tag}: no answer within {budget.deadline_s:g} s")
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the judge's endpoint or model failed: attributed to the judge
            cost.calls += 1
            failure = Unscorable(kind="judge_error", message=f"{tag}: {type(exc).__name__}: {exc}")
            continue
        cost.calls += 1
        if len(turns) != 1 or turns[0].error is not None:
            detail = f"{turns[0].error.kind}: {turns[0].error.message}" if len(turns) == 1 and turns[0].error else f"{len(turns)} turns for 1 request"
            failure = Unscorable(kind="judge_error", message=f"{tag}: {detail}")
            continue
        turn = turns[0]
        cost.prompt_tokens += len(turn.prompt_token_ids or [])
        cost.completion_tokens += len(turn.token_ids or [])
        try:
            value = question.parse(turn.text)
        except JudgementParseError as exc:
            failure = Unscorable(kind="judge_unparseable", message=f"{tag}: {exc}")
            continue
        best, failure = value, None
        if question.complete(value):
            break
    cost.latency_s = time.perf_counter() - start
    return Asked(value=best, failure=None if best is not None else failure, cost=cost)
