"""Trajectory synthesis and judging: episodes in the agents' simulated envs, scored against task rubrics.

Each task runs in its agent's ``SimulatedToolEnv`` (schema simulator, stateful world), behind
``FaultInjection`` with the configured noise and failures, with a simulated user. The acting
policy is any endpoint; offline it replays the gold actions (faults still make some fail).
The judge (an ``LLMJudge`` on an endpoint, or the offline judge) scores each episode on the
task's own rubric; the episodes whose total reaches the threshold are kept.

The offline judge scores a criterion that can be verified with the matching check (a named
tool call, the required outputs) and the rest by rules over the transcript (an answer was
given, no extra changing calls). Judge agreement compares the judge's verdicts on verifiable
criteria with the checks' verdicts; for the offline judge it is 1 by construction, for an
``LLMJudge`` it measures the judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.synth.models import AgentSpec
from toolgym.envs.synth.population import agent_env
from toolgym.envs.synth.records import ItemFailure
from toolgym.envs.types import Task, ToolMessage
from toolgym.envs.users.llm import LLMUser
from toolgym.envs.users.scripted import ScriptedUser
from toolgym.envs.wrappers.faults import FaultInjection
from toolgym.errors import ConfigError
from toolgym.policies.scripted import ScriptedPolicy
from toolgym.policy import Policy, SamplingParams
from toolgym.rollouts.episode import Episode
from toolgym.rollouts.loop import arun_episodes
from toolgym.rubrics.checks.registry import run_check
from toolgym.rubrics.critics.base import FunctionCritic
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.rubrics.score import Score
from toolgym.rubrics.scoring import score_episodes
from toolgym.rubrics.synth.config import EndpointConfig, JudgeConfig, TrajectoryConfig

BASE_RUBRIC = Rubric(
    name="synth",
    description="A synthesized task's own criteria, judged against the transcript.",
    criteria=[Criterion.from_check("well_formed_call_rate", id="well_formed_calls", weight=0.0)],
)
"""The rubric every synthesized task's criteria are added to (its own criterion has weight 0)."""


def env_id(run: str, agent: str) -> str:
    """The registered id of an agent's environment."""
    return f"synth-{run}/{agent}-v0"


def endpoint(cfg: EndpointConfig) -> Policy | None:
    """The policy an endpoint config names (None for the offline fallback)."""
    if cfg.kind == "fallback":
        return None
    from toolgym.policies.openai_policy import OpenAIPolicy

    if not cfg.base_url:
        raise ConfigError("an endpoint of kind 'openai' needs base_url (for example http://127.0.0.1:8000/v1, from `toolgym serve`)")
    return OpenAIPolicy(cfg.base_url, cfg.model, token_ids=cfg.token_ids, logprobs=False, timeout_s=cfg.timeout_s)


async def synthesize_episodes(tasks: Sequence[Task], agents: dict[str, AgentSpec], compiled: dict[str, CompiledTool],
                              cfg: TrajectoryConfig, *, run: str, seed: int, policy: Policy | None = None) -> list[Episode]:
    """One episode per task, in task order; tasks of one agent share its env factory."""
    acting = policy if policy is not None else ScriptedPolicy.gold(tasks)
    user: Any = LLMUser(policy, seed=seed) if cfg.user == "llm" and policy is not None else ScriptedUser()
    groups: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        groups.setdefault(task.metadata["agent"], []).append(i)
    sampling = SamplingParams(max_new_tokens=cfg.policy.max_new_tokens, temperature=cfg.policy.temperature)

    async def run_group(name: str, indices: list[int]) -> list[Episode]:
        agent = agents[name]

        def factory() -> Any:
            env = agent_env(agent, compiled, tasks=[tasks[i] for i in indices], user=user, max_simulator_errors=cfg.max_simulator_errors)
            return FaultInjection(env, cfg.faults)

        factory.__name__ = env_id(run, name)
        group_seed = seed + indices[0]
        return await arun_episodes(factory, acting, tasks=[tasks[i] for i in indices], seed=group_seed,
                                   concurrency=cfg.concurrency, sampling=sampling)

    results = await asyncio.gather(*(run_group(n, idx) for n, idx in groups.items()))
    out: list[Episode | None] = [None] * len(tasks)
    for (_, indices), episodes in zip(groups.items(), results, strict=True):
        for i, ep in zip(indices, episodes, strict=True):
            out[i] = ep
    return [ep for ep in out if ep is not None]


def _gold_arguments(task: Task, name: str) -> dict[str, Any]:
    return next((a.arguments for a in task.gold_actions if a.name == name), {})


def verified(episode: Episode, criterion: str) -> bool | None:
    """The check's verdict on a verifiable criterion (None: the criterion is not verifiable)."""
    task = episode.task
    if criterion.startswith("calls "):
        name = criterion.split()[1]
        return run_check("tool_called", task, episode, params={"name": name, "arguments": _gold_arguments(task, name)}) == 1.0
    if criterion.startswith("the answer") and task.expected.outputs and "confirm" not in criterion:
        return run_check("required_outputs_present", task, episode) == 1.0
    return None


def _offline_verdict(episode: Episode, criterion: Criterion) -> float:
    check = verified(episode, criterion.description)
    if check is not None:
        return float(check)
    text = criterion.description
    errors = sum(1 for m in episode.messages if isinstance(m, ToolMessage) and m.error is not None)
    if text.startswith("the answer"):  # confirms the change or removal: an answer after calls that worked
        return float(bool(episode.final_answer.strip()) and errors == 0)
    if text.startswith("no other record"):
        calls = sum(1 for m in episode.messages if isinstance(m, ToolMessage) and m.error is None)
        return float(calls <= len(episode.task.gold_actions))
    return float(errors == 0)


def offline_judge() -> FunctionCritic:
    """The judge used without a model: checks on verifiable criteria, rules on the others."""
    return FunctionCritic("judge", _offline_verdict)


def make_judge(cfg: JudgeConfig, seed: int) -> Any:
    """An ``LLMJudge`` on the configured endpoint, or the offline judge."""
    policy = endpoint(cfg.judge)
    if policy is None:
        return offline_judge()
    from toolgym.rubrics.critics.judge import LLMJudge

    return LLMJudge(policy, name="judge", seed=seed, retries=1,
                    sampling=SamplingParams(max_new_tokens=cfg.judge.max_new_tokens, temperature=0.0))


async def judge_episodes(episodes: Sequence[Episode], critic: Any) -> list[Score]:
    """Each episode's score on its task's rubric (infrastructure failures are unscorable, not 0)."""
    return await score_episodes(episodes, BASE_RUBRIC, critics={"judge": critic})


def verdict(episode: Episode, score: Score, threshold: float) -> ItemFailure | None:
    """Why the episode is not kept (None: kept)."""
    if episode.failure is not None:
        return ItemFailure(stage="trajectories", item=episode.task.id, kind="episode_failed", message=f"{episode.failure.kind}: {episode.failure.message}"[:300])
    if score.total is None:
        reason = score.unscorable.message if score.unscorable else "no total"
        return ItemFailure(stage="judge", item=episode.task.id, kind="judge_failed", message=reason[:300])
    if score.total < threshold:
        return ItemFailure(stage="judge", item=episode.task.id, kind="below_threshold", message=f"total {score.total:.3f} < {threshold:g}")
    return None


def agreement_pairs(episode: Episode, score: Score) -> list[tuple[bool, bool]]:
    """(judge says met, check says met) for each verifiable criterion of the task that the judge scored."""
    descriptions = {f"task_{item['id']}": item["description"] for item in episode.task.metadata.get("rubric", [])}
    ids = set(episode.task.metadata.get("synth", {}).get("verifiable", []))
    pairs = []
    for c in score.criteria:
        if c.id.removeprefix("task_") in ids and c.value is not None and c.id in descriptions:
            check = verified(episode, descriptions[c.id])
            if check is not None:
                pairs.append((c.value >= 0.5, check))
    return pairs
