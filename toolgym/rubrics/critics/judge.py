"""``LLMJudge``: a model reads the rubric and the transcript and scores each criterion in JSON.

Any ``Policy`` can judge: a local model (``HFPolicy``), an OpenAI-compatible endpoint
(``OpenAIPolicy``), or the policy being trained (self-critique). Calls share a ``JudgeBudget``
(concurrency limit, deadline, cache); failures come back as unscorable criteria with a reason.

>>> from toolgym.rubrics.catalog import rubric_for
>>> rubric = rubric_for("toolgym/unitconv-v0")
>>> messages = judge_prompt(rubric, rubric.criteria[:1], "[user] hi")
>>> "id: " + rubric.criteria[0].id in messages[1].content
True
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from toolgym.envs.types import Message, SystemMessage, UserMessage
from toolgym.policy import Policy, SamplingParams
from toolgym.rollouts.batcher import batching
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.critics.ask import Question, ask
from toolgym.rubrics.critics.base import CriticResult
from toolgym.rubrics.critics.budget import JudgeBudget, cache_key
from toolgym.rubrics.critics.parse import complete, parse_pointwise
from toolgym.rubrics.critics.transcript import render_transcript
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.rubrics.score import ComponentCost

PROMPT_VERSION = "judge-v1"
"""Part of every cache key: changing the prompt must not serve judgements made with the old one."""

JUDGE_SYSTEM = (
    "You are a strict, fair grader of an AI assistant working with tools. Read the task, the "
    "conversation with its tool calls and results, and score each criterion on its own scale. "
    "Judge only what the transcript shows. Reply with one JSON object and nothing else."
)
DEFAULT_SAMPLING = SamplingParams(max_new_tokens=512, temperature=0.0)


def describe_criteria(criteria: Sequence[Criterion]) -> str:
    """The criteria as a judge reads them: id, description, scale and its labels."""
    lines = []
    for c in criteria:
        labels = "; ".join(f"{k} = {v}" for k, v in c.scale.labels.items())
        scale = f"{c.scale.low:g} to {c.scale.high:g}" + (f" ({labels})" if labels else "")
        lines.append(f"- id: {c.id}\n  what: {c.description}\n  scale: {scale}")
    return "\n".join(lines)


def judge_prompt(rubric: Rubric, criteria: Sequence[Criterion], transcript: str, reference: str | None = None) -> list[Message]:
    """Messages asking for a pointwise judgement. Reply with one JSON object per the shape shown."""
    shape = json.dumps({"criteria": [{"id": "<criterion id>", "score": "<number on its scale>", "rationale": "<one short sentence>"}]})
    parts = [
        f"Rubric: {rubric.name}" + (f" - {rubric.description}" if rubric.description else ""),
        f"Criteria:\n{describe_criteria(criteria)}",
        f"Transcript:\n<transcript>\n{transcript}\n</transcript>",
    ]
    if reference:
        parts.append(f"A reference answer (for comparison only): {reference}")
    parts.append(f"Reply with exactly this JSON shape, one entry per criterion id above:\n{shape}")
    return [SystemMessage(content=JUDGE_SYSTEM), UserMessage(content="\n\n".join(parts))]


class LLMJudge:
    """Pointwise rubric judge backed by any ``Policy``.

    Args:
        policy: The model that judges.
        name: Critic name that rubric criteria refer to (``source: {type: critic, critic: judge}``).
        budget: Shared concurrency limit, deadline and cache (a private one by default).
        retries: Extra attempts after an error, timeout or unparseable/partial answer.
        sampling: Sampling of the judge (greedy by default, so judgements repeat).
        seed: Base seed of judge requests.
        max_transcript_chars: Longer transcripts are cut in the middle.
        show_reference: Show the task's reference answer to the judge.
        model_id: Identifies the judge model in cache keys (default: this policy object).
    """

    group_wise = False

    def __init__(
        self,
        policy: Policy,
        *,
        name: str = "judge",
        budget: JudgeBudget | None = None,
        retries: int = 2,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
        max_transcript_chars: int = 12000,
        show_reference: bool = False,
        model_id: str | None = None,
    ):
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self.policy = policy
        self.name = name
        self.budget = budget or JudgeBudget()
        self.retries = retries
        self.sampling = sampling
        self.seed = seed
        self.max_transcript_chars = max_transcript_chars
        self.show_reference = show_reference
        self.model_id = model_id or f"{type(policy).__qualname__}@{id(policy)}"

    async def judge(self, episodes: Sequence[Episode], criteria: Sequence[Criterion], rubric: Rubric) -> list[CriticResult]:
        """Judge each episode on ``criteria``; calls run concurrently (and batched) within the budget."""
        async with batching(self.policy) as policy:
            return list(await asyncio.gather(*(self._judge_one(policy, ep, criteria, rubric) for ep in episodes)))

    async def _judge_one(self, policy: Policy, episode: Episode, criteria: Sequence[Criterion], rubric: Rubric) -> CriticResult:
        reference = (episode.task.expected.answer or episode.task.gold_answer) if self.show_reference else None
        messages = judge_prompt(rubric, criteria, render_transcript(episode, self.max_transcript_chars), reference)
        key = cache_key(PROMPT_VERSION, self.name, self.model_id, self.sampling.model_dump_json(), *(m.model_dump_json() for m in messages))
        cache = self.budget.cache
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            return CriticResult(judgements=dict(cached), cost=_hit(self.name))
        question = Question(
            request_id=f"{self.name}-{key[:12]}",
            messages=messages,
            parse=lambda text: parse_pointwise(text, criteria),
            complete=complete,
        )
        asked = await ask(policy, self.budget, question, critic=self.name, seed=self.seed, sampling=self.sampling, retries=self.retries)
        if asked.value is None:
            return CriticResult.failed(criteria, asked.failure, asked.cost)  # type: ignore[arg-type]  # failure is set when the answer is missing
        if cache is not None and complete(asked.value):
            cache.put(key, {k: v.model_copy() for k, v in asked.value.items()})
        return CriticResult(judgements=asked.value, cost=asked.cost)


def _hit(name: str) -> ComponentCost:
    return ComponentCost(name=f"critic:{name}", cache_hits=1)
