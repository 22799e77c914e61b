"""What a critic is: something that judges episodes against rubric criteria, asynchronously.

A critic returns one ``CriticResult`` per episode. It never raises for a bad judgement: a model
error, a timeout or an unreadable answer becomes an ``Unscorable`` on the affected criteria,
so the scorer can count it instead of scoring 0.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from toolgym.rollouts.episode import Episode
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.rubrics.score import ComponentCost, Unscorable


class Judgement(BaseModel):
    """A critic's verdict on one criterion of one episode."""

    model_config = ConfigDict(extra="forbid")

    raw: float | None = None
    """Value on the criterion's scale; None exactly when ``unscorable`` is set."""
    rationale: str = ""
    unscorable: Unscorable | None = None


class CriticResult(BaseModel):
    """A critic's verdicts on one episode, by criterion id, and what they cost."""

    model_config = ConfigDict(extra="forbid")

    judgements: dict[str, Judgement] = Field(default_factory=dict)
    cost: ComponentCost

    @classmethod
    def failed(cls, criteria: Sequence[Criterion], reason: Unscorable, cost: ComponentCost) -> CriticResult:
        """Every criterion unscorable for the same reason."""
        return cls(judgements={c.id: Judgement(unscorable=reason) for c in criteria}, cost=cost)


@runtime_checkable
class Critic(Protocol):
    """Judges episodes against the criteria whose source names it."""

    name: str
    group_wise: bool
    """True when ``judge`` must receive a whole GRPO group at once (pairwise critics)."""

    async def judge(self, episodes: Sequence[Episode], criteria: Sequence[Criterion], rubric: Rubric) -> list[CriticResult]:
        """One result per episode, in order. Failures are results with unscorable judgements."""
        ...


CriticFn = Callable[[Episode, Criterion], Any]


class FunctionCritic:
    """A programmatic critic from a plain function ``fn(episode, criterion)``.

    The function returns a value on the criterion's scale, or ``(value, rationale)``; it may be
    async. An exception makes the criterion unscorable (``judge_error``), never 0.

    Args:
        name: The critic name rubrics refer to.
        fn: The judging function.

    >>> critic = FunctionCritic("short", lambda ep, c: float(len(ep.final_answer) < 80))
    >>> critic.name
    'short'
    """

    group_wise = False

    def __init__(self, name: str, fn: CriticFn):
        self.name = name
        self.fn = fn

    async def judge(self, episodes: Sequence[Episode], criteria: Sequence[Criterion], rubric: Rubric) -> list[CriticResult]:
        """One result per episode: the function's verdict on each criterion (in order, one at a time)."""
        return [await self._judge_one(ep, criteria) for ep in episodes]

    async def _judge_one(self, episode: Episode, criteria: Sequence[Criterion]) -> CriticResult:
        start = time.perf_counter()
        judgements = {c.id: await self._call(episode, c) for c in criteria}
        cost = ComponentCost(name=f"critic:{self.name}", latency_s=time.perf_counter() - start)
        return CriticResult(judgements=judgements, cost=cost)

    async def _call(self, episode: Episode, criterion: Criterion) -> Judgement:
        try:
            out = self.fn(episode, criterion)
            if inspect.isawaitable(out):
                out = await out
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the critic's own bug or failure: unscorable, attributed to it
            return Judgement(unscorable=Unscorable(kind="judge_error", message=f"{self.name}: {type(exc).__name__}: {exc}"))
        value, rationale = out if isinstance(out, tuple) else (out, "")
        if value is None:
            return Judgement(unscorable=Unscorable(kind="judge_unparseable", message=f"{self.name} returned no value"))
        return Judgement(raw=float(value), rationale=str(rationale))
