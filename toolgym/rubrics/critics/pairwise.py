"""``PairwiseCritic``: compare the siblings of a GRPO group against the rubric, rank by wins.

Absolute scores from a judge drift; preferences between two answers to the same task are more
stable, and GRPO only needs the ranking within a group. Each pair is shown to the judge (in both
orders by default, which cancels position bias), the wins are collected per criterion, and
Bradley-Terry (or the plain win rate) turns them into a score in [0, 1] per episode. The policy
being trained can itself be the judge.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from itertools import combinations

from toolgym.envs.types import Message, SystemMessage, UserMessage
from toolgym.policy import Policy, SamplingParams
from toolgym.rollouts.batcher import batching
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.critics.ask import Asked, Question, ask
from toolgym.rubrics.critics.base import CriticResult, Judgement
from toolgym.rubrics.critics.budget import JudgeBudget, cache_key
from toolgym.rubrics.critics.judge import describe_criteria
from toolgym.rubrics.critics.parse import PairItem, complete, parse_pairwise
from toolgym.rubrics.critics.ranking import RANKERS, RankMethod, win_matrix
from toolgym.rubrics.critics.transcript import render_transcript
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.rubrics.score import ComponentCost, Unscorable

PROMPT_VERSION = "pairwise-v1"
PAIRWISE_SYSTEM = (
    "You compare two responses of an AI assistant working with tools on the same task. For each "
    'criterion decide which response is better: "A", "B" or "tie". Judge only what the transcripts '
    "show. Reply with one JSON object and nothing else."
)
DEFAULT_SAMPLING = SamplingParams(max_new_tokens=384, temperature=0.0)


def pairwise_sections(rubric: Rubric, criteria: Sequence[Criterion], task: str, a: str, b: str) -> list[str]:
    """The paragraphs every pairwise prompt shows: rubric, criteria, task and the two responses
    (shared by the JSON prompt here and the label prompt of ``toolgym.rubrics.critics.label``)."""
    return [
        f"Rubric: {rubric.name}" + (f" - {rubric.description}" if rubric.description else ""),
        f"Criteria:\n{describe_criteria(criteria)}",
        f"Task given to the assistant:\n{task}",
        f"Response A:\n<response_a>\n{a}\n</response_a>",
        f"Response B:\n<response_b>\n{b}\n</response_b>",
    ]


def pairwise_prompt(rubric: Rubric, criteria: Sequence[Criterion], task: str, a: str, b: str) -> list[Message]:
    """Messages asking which of two transcripts better meets each criterion."""
    shape = json.dumps({"criteria": [{"id": "<criterion id>", "winner": "A | B | tie", "rationale": "<one short sentence>"}]})
    body = "\n\n".join(
        [
            *pairwise_sections(rubric, criteria, task, a, b),
            f"Reply with exactly this JSON shape, one entry per criterion id above:\n{shape}",
        ]
    )
    return [SystemMessage(content=PAIRWISE_SYSTEM), UserMessage(content=body)]


class PairwiseCritic:
    """Group-wise critic: pairwise preferences within a GRPO group, ranked into scores.

    Args:
        policy: The judging model (may be the policy under training).
        name: Critic name rubric criteria refer to.
        budget: Shared concurrency limit, deadline and cache.
        method: "bradley_terry" or "win_rate".
        both_orders: Ask each pair as (A, B) and (B, A) to cancel position bias.
        retries: Extra attempts per comparison.
        sampling: Judge sampling (greedy by default).
        seed: Base seed of judge requests.
        max_transcript_chars: Per-response transcript limit.
        model_id: Identifies the judge model in cache keys.
    """

    group_wise = True

    def __init__(
        self,
        policy: Policy,
        *,
        name: str = "pairwise",
        budget: JudgeBudget | None = None,
        method: RankMethod = "bradley_terry",
        both_orders: bool = True,
        retries: int = 1,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
        max_transcript_chars: int = 6000,
        model_id: str | None = None,
    ):
        if method not in RANKERS:
            raise ValueError(f"method must be one of {sorted(RANKERS)}, got {method!r}")
        self.policy = policy
        self.name = name
        self.budget = budget or JudgeBudget()
        self.method = method
        self.both_orders = both_orders
        self.retries = retries
        self.sampling = sampling
        self.seed = seed
        self.max_transcript_chars = max_transcript_chars
        self.model_id = model_id or f"{type(policy).__qualname__}@{id(policy)}"

    async def judge(self, episodes: Sequence[Episode], criteria: Sequence[Criterion], rubric: Rubric) -> list[CriticResult]:
        """Score every episode of one group from its comparisons with its siblings."""
        n = len(episodes)
        if n < 2:
            reason = Unscorable(kind="no_comparisons", message="a group of one episode has nothing to compare with")
            return [CriticResult.failed(criteria, reason, ComponentCost(name=f"critic:{self.name}")) for _ in episodes]
        pairs = list(combinations(range(n), 2))
        if self.both_orders:
            pairs += [(b, a) for a, b in pairs]
        texts = [render_transcript(ep, self.max_transcript_chars, include_opening=False) for ep in episodes]
        async with batching(self.policy) as policy:
            asked = await asyncio.gather(*(self._compare(policy, episodes[a], texts[a], texts[b], criteria, rubric) for a, b in pairs))
        costs = _split_costs(n, pairs, asked, self.name)
        judgements = [dict[str, Judgement]() for _ in episodes]
        for c in criteria:
            for i, j in enumerate(self._rank(c, n, pairs, asked)):
                judgements[i][c.id] = j
        return [CriticResult(judgements=judgements[i], cost=costs[i]) for i in range(n)]

    async def _compare(self, policy: Policy, first: Episode, a: str, b: str, criteria: Sequence[Criterion], rubric: Rubric) -> Asked[dict[str, PairItem | Unscorable]]:
        messages = pairwise_prompt(rubric, criteria, first.task.instruction, a, b)
        key = cache_key(PROMPT_VERSION, self.name, self.model_id, self.sampling.model_dump_json(), *(m.model_dump_json() for m in messages))
        cache = self.budget.cache
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            return Asked(value=dict(cached), failure=None, cost=ComponentCost(name=f"critic:{self.name}", cache_hits=1))
        question = Question(request_id=f"{self.name}-{key[:12]}", messages=messages, parse=lambda t: parse_pairwise(t, criteria), complete=complete)
        out = await ask(policy, self.budget, question, critic=self.name, seed=self.seed, sampling=self.sampling, retries=self.retries)
        if cache is not None and out.value is not None and complete(out.value):
            cache.put(key, dict(out.value))
        return out

    def _rank(self, c: Criterion, n: int, pairs: list[tuple[int, int]], asked: Sequence[Asked]) -> list[Judgement]:
        outcomes: list[tuple[int, int, str]] = []
        failures: list[Counter[str]] = [Counter() for _ in range(n)]
        for (a, b), result in zip(pairs, asked, strict=True):
            verdict = result.value.get(c.id) if result.value is not None else result.failure
            if isinstance(verdict, PairItem):
                outcomes.append((a, b, verdict.winner))
            else:
                kind = verdict.kind if isinstance(verdict, Unscorable) else "judge_unparseable"
                failures[a][kind] += 1
                failures[b][kind] += 1
        wins = win_matrix(n, outcomes)
        scores = RANKERS[self.method](wins)
        out = []
        for i, s in enumerate(scores):
            played = int(sum(1 for a, b, _ in outcomes if i in (a, b)))
            if s is None:
                seen = ", ".join(f"{k} x{v}" for k, v in sorted(failures[i].items())) or "none attempted"
                out.append(Judgement(unscorable=Unscorable(kind="no_comparisons", message=f"no valid comparison for {c.id!r} (failed: {seen})")))
            else:
                raw = c.scale.low + s * (c.scale.high - c.scale.low)
                won = float(wins[i].sum())
                out.append(Judgement(raw=raw, rationale=f"{won:g} wins in {played} comparisons ({self.method})"))
        return out


def _split_costs(n: int, pairs: list[tuple[int, int]], asked: Sequence[Asked], name: str) -> list[ComponentCost]:
    """Each comparison's calls go to its first episode and its tokens half to each, so the
    group's sums are exact; latency is the time each episode's comparisons took."""
    costs = [ComponentCost(name=f"critic:{name}") for _ in range(n)]
    for (a, b), result in zip(pairs, asked, strict=True):
        c = result.cost
        costs[a].calls += c.calls
        costs[a].cache_hits += c.cache_hits
        costs[a].prompt_tokens += c.prompt_tokens - c.prompt_tokens // 2
        costs[b].prompt_tokens += c.prompt_tokens // 2
        costs[a].completion_tokens += c.completion_tokens - c.completion_tokens // 2
        costs[b].completion_tokens += c.completion_tokens // 2
        costs[a].latency_s += c.latency_s
        costs[b].latency_s += c.latency_s
    return costs
