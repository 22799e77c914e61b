"""Scoring episodes with a rubric: run the checks, ask the critics, compose the totals.

>>> import toolgym
>>> from toolgym.rubrics import score_episodes_sync
>>> from toolgym.rubrics.catalog import rubric_for
>>> rubric = rubric_for("toolgym/unitconv-v0")
>>> rubric.name
'unitconv'
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolgym.errors import ConfigError
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.checks.base import CheckUnscorable
from toolgym.rubrics.checks.registry import run_check
from toolgym.rubrics.compose import compose
from toolgym.rubrics.critics.base import Critic, CriticResult, Judgement
from toolgym.rubrics.penalties import apply_penalty
from toolgym.rubrics.rubric import CheckSource, Criterion, CriticSource, Rubric
from toolgym.rubrics.score import ComponentCost, CriterionScore, Score, Unscorable

Critics = Mapping[str, Critic] | Iterable[Critic] | None


async def score_episodes(
    episodes: Sequence[Episode],
    rubric: Rubric,
    *,
    critics: Critics = None,
    env: Any = None,
    skip_missing_critics: bool = False,
) -> list[Score]:
    """Score every episode with ``rubric``; critics run concurrently, within their budgets.

    Args:
        episodes: Episodes to score (GRPO siblings share ``episode.group``).
        rubric: The rubric.
        critics: Critics by name (or a list; each has a ``name``) for critic-sourced criteria.
        env: A fresh environment for checks that replay gold actions (default: the registry).
        skip_missing_critics: Mark criteria of absent critics not applicable instead of raising.

    Returns:
        One ``Score`` per episode, in order. Episodes with an infrastructure failure are
        unscorable without running anything.

    Raises:
        ConfigError: the rubric names a critic that was not given (and skipping is off).
    """
    extended = [rubric.with_task_criteria(ep.task) for ep in episodes]
    if any(r is not rubric for r in extended):  # synthesized tasks carry criteria of their own
        return await _score_by_rubric(episodes, extended, critics=critics, env=env, skip_missing_critics=skip_missing_critics)
    by_name = _critic_map(critics)
    missing = rubric.critic_names() - set(by_name)
    if missing and not skip_missing_critics:
        raise ConfigError(
            f"rubric {rubric.name!r} needs critic(s) {sorted(missing)} but got {sorted(by_name) or 'none'}; "
            "pass critics={'NAME': LLMJudge(...)} or skip_missing_critics=True"
        )
    live = [i for i, ep in enumerate(episodes) if _infrastructure(ep) is None]
    results: dict[int, dict[str, CriterionScore]] = {i: {} for i in live}
    costs: dict[int, list[ComponentCost]] = {i: [] for i in live}
    for i in live:
        _run_checks(rubric, episodes[i], env, results[i], costs[i])
    stages = [_run_critic(by_name[name], rubric, episodes, live, results, costs) for name in sorted(rubric.critic_names() - missing)]
    await asyncio.gather(*stages)
    return [_finish(rubric, ep, results.get(i), costs.get(i, []), missing) for i, ep in enumerate(episodes)]


async def _score_by_rubric(episodes: Sequence[Episode], rubrics: list[Rubric], **kwargs: Any) -> list[Score]:
    """Score each group of episodes sharing one (task-extended) rubric; scores keep episode order."""
    groups: dict[str, tuple[Rubric, list[int]]] = {}
    for i, r in enumerate(rubrics):
        groups.setdefault(r.model_dump_json(), (r, []))[1].append(i)
    out: list[Score | None] = [None] * len(episodes)
    for r, idx in groups.values():
        for i, s in zip(idx, await score_episodes([episodes[i] for i in idx], r, **kwargs), strict=True):
            out[i] = s
    return [s for s in out if s is not None]


def score_episodes_sync(episodes: Sequence[Episode], rubric: Rubric, **kwargs: Any) -> list[Score]:
    """``score_episodes`` for code that is not async (scripts, the CLI)."""
    return asyncio.run(score_episodes(episodes, rubric, **kwargs))


def _critic_map(critics: Critics) -> dict[str, Critic]:
    if critics is None:
        return {}
    if isinstance(critics, Mapping):
        return dict(critics)
    return {c.name: c for c in critics}


def _infrastructure(episode: Episode) -> Unscorable | None:
    if episode.failure is not None:
        f = episode.failure
        return Unscorable(kind="infrastructure", message=f"{f.boundary} failure ({f.kind}) after {f.attempts} attempt(s): {f.message}")
    if episode.stop_reason.is_failure:
        return Unscorable(kind="infrastructure", message=f"episode stopped with {episode.stop_reason.value}")
    return None


def _entry(c: Criterion, **fields: Any) -> CriterionScore:
    return CriterionScore(id=c.id, kind=c.kind, source=c.source.label, weight=c.weight, gate=c.gate, **fields)


def _run_checks(rubric: Rubric, episode: Episode, env: Any, out: dict[str, CriterionScore], costs: list[ComponentCost]) -> None:
    for c in rubric.for_task(episode.task):
        if not isinstance(c.source, CheckSource):
            continue
        start = time.perf_counter()
        out[c.id] = _check_entry(c, c.source, episode, env)
        elapsed = time.perf_counter() - start
        out[c.id].latency_s = elapsed
        costs.append(ComponentCost(name=c.source.label, latency_s=elapsed))


def _check_entry(c: Criterion, source: CheckSource, episode: Episode, env: Any) -> CriterionScore:
    try:
        value = run_check(source.check, episode.task, episode, env, source.params)
    except CheckUnscorable as exc:
        return _entry(c, unscorable=Unscorable(kind="missing_data", message=str(exc)))
    except Exception as exc:  # a check's bug or a broken task must not read as the model's 0
        return _entry(c, unscorable=Unscorable(kind="check_error", message=f"{type(exc).__name__}: {exc}"))
    if value is None:
        return _entry(c, applicable=False, rationale="does not apply to this task")
    return _entry(c, value=value, raw=value)


async def _run_critic(
    critic: Critic,
    rubric: Rubric,
    episodes: Sequence[Episode],
    live: list[int],
    results: dict[int, dict[str, CriterionScore]],
    costs: dict[int, list[ComponentCost]],
) -> None:
    batches: dict[tuple[str, ...], list[int]] = defaultdict(list)
    wanted: dict[int, list[Criterion]] = {}
    for i in live:
        wanted[i] = [c for c in rubric.for_task(episodes[i].task) if isinstance(c.source, CriticSource) and c.source.critic == critic.name]
        if wanted[i]:
            # Group-wise critics compare GRPO siblings; others batch episodes asking the same questions.
            key = (episodes[i].group or f"#{i}",) if critic.group_wise else tuple(c.id for c in wanted[i])
            batches[key].append(i)
    outcomes = await asyncio.gather(*(_judge_batch(critic, rubric, [episodes[i] for i in idx], wanted[idx[0]]) for idx in batches.values()))
    for idx, batch_results in zip(batches.values(), outcomes, strict=True):
        for i, result in zip(idx, batch_results, strict=True):
            costs[i].append(result.cost)
            for c in wanted[i]:
                results[i][c.id] = _critic_entry(c, result.judgements.get(c.id), result.cost.latency_s, critic.name)


async def _judge_batch(critic: Critic, rubric: Rubric, episodes: list[Episode], criteria: list[Criterion]) -> list[CriticResult]:
    cost = ComponentCost(name=f"critic:{critic.name}")
    try:
        out = await critic.judge(episodes, criteria, rubric)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a crashing critic is an infrastructure fault of the judge
        reason = Unscorable(kind="judge_error", message=f"critic {critic.name!r} raised {type(exc).__name__}: {exc}")
        return [CriticResult.failed(criteria, reason, cost) for _ in episodes]
    if len(out) != len(episodes):
        reason = Unscorable(kind="judge_error", message=f"critic {critic.name!r} returned {len(out)} results for {len(episodes)} episodes")
        return [CriticResult.failed(criteria, reason, cost) for _ in episodes]
    return list(out)


def _critic_entry(c: Criterion, judgement: Judgement | None, latency_s: float, critic: str) -> CriterionScore:
    if judgement is None:
        return _entry(c, latency_s=latency_s, unscorable=Unscorable(kind="judge_unparseable", message=f"critic {critic!r} gave no verdict on {c.id!r}"))
    if judgement.unscorable is not None or judgement.raw is None:
        reason = judgement.unscorable or Unscorable(kind="judge_unparseable", message="no value")
        return _entry(c, latency_s=latency_s, rationale=judgement.rationale, unscorable=reason)
    try:
        value = c.scale.normalize(judgement.raw)
    except ValueError as exc:
        return _entry(c, latency_s=latency_s, raw=judgement.raw, rationale=judgement.rationale, unscorable=Unscorable(kind="judge_unparseable", message=f"critic {critic!r}: {exc}"))
    return _entry(c, value=value, raw=judgement.raw, rationale=judgement.rationale, latency_s=latency_s)


def _finish(rubric: Rubric, episode: Episode, results: dict[str, CriterionScore] | None, costs: list[ComponentCost], skipped: set[str]) -> Score:
    failure = _infrastructure(episode)
    if failure is not None or results is None:
        return Score(episode_id=episode.id, rubric=rubric.name, unscorable=failure)
    ordered: list[CriterionScore] = []
    for c in rubric.for_task(episode.task):
        if c.id in results:
            ordered.append(results[c.id])
        elif isinstance(c.source, CriticSource) and c.source.critic in skipped:
            ordered.append(_entry(c, applicable=False, skipped=True, rationale=f"skipped: critic {c.source.critic!r} not given"))
    penalties = [apply_penalty(p, episode) for p in rubric.penalties]
    return compose(rubric.name, episode.id, ordered, penalties, _merge(costs), rubric.on_unscorable)


def _merge(costs: list[ComponentCost]) -> list[ComponentCost]:
    """One cost per component name (several criteria may share a check)."""
    merged: dict[str, ComponentCost] = {}
    for cost in costs:
        if cost.name not in merged:
            merged[cost.name] = cost.model_copy()
            continue
        m = merged[cost.name]
        m.latency_s += cost.latency_s
        m.calls += cost.calls
        m.cache_hits += cost.cache_hits
        m.prompt_tokens += cost.prompt_tokens
        m.completion_tokens += cost.completion_tokens
    return sorted(merged.values(), key=lambda m: m.name)

