"""Agents and tasks at scale: coherent tool sets from the tool graph, tasks with difficulty labels.

The tool graph links tools that work on one entity, tools evolved one from another, and tools
of one domain. Agent ``i`` starts from a tool drawn with its own RNG and grows its tool set
along those links, nearest first (same entity, then lineage, then domain), so every agent's
tools belong together. Task ``j`` of an agent combines one (easy), two (medium) or three
(hard) requests, each the fallback synthesizer's plan for one of the agent's tools; the task
records its difficulty and which of its rubric criteria can be checked without a judge.
A task whose gold actions fail in the agent's own environment is dropped (``gold_replay_failed``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.canonical import seed_from
from toolgym.envs.sim.env import SimulatedToolEnv
from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.synth.fallback import FallbackSynthesizer
from toolgym.envs.synth.models import AgentSpec, rubric_items
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.types import Expected, JsonDict, Task, ToolCall
from toolgym.errors import ToolgymError

Difficulty = Literal["easy", "medium", "hard"]
DIFFICULTY_PLANS: dict[str, int] = {"easy": 1, "medium": 2, "hard": 3}
DEFAULT_DIFFICULTY: dict[Difficulty, float] = {"easy": 0.5, "medium": 0.35, "hard": 0.15}
"""Requests combined in one task, per difficulty label."""


class PopulationConfig(BaseModel):
    """How many agents and tasks, and how they are shaped."""

    model_config = ConfigDict(extra="forbid")

    agents: int = Field(default=20, ge=1)
    tasks: int = Field(default=200, ge=1)
    """Tasks over all agents (spread evenly, agents in turn)."""
    min_tools: int = Field(default=3, ge=1)
    max_tools: int = Field(default=8, ge=1)
    difficulty: dict[Difficulty, float] = Field(default_factory=lambda: dict(DEFAULT_DIFFICULTY))
    """Relative frequency of each label (keys among easy, medium, hard)."""
    shard_size: int = Field(default=1000, ge=1)
    """Tasks per cache shard."""


class ToolGraph:
    """Tools and their links: entity, lineage and domain neighbours."""

    def __init__(self, records: Sequence[ToolRecord]):
        self.records = list(records)
        self.by_name = {r.name: r for r in self.records}
        self.by_entity: dict[str, list[str]] = {}
        self.by_domain: dict[str, list[str]] = {}
        self.children: dict[str, list[str]] = {}
        for r in self.records:
            self.by_entity.setdefault(r.entity, []).append(r.name)
            self.by_domain.setdefault(r.domain, []).append(r.name)
            for p in r.parents:
                self.children.setdefault(p, []).append(r.name)

    def rings(self, name: str) -> list[list[str]]:
        """The tools around ``name``, nearest ring first: same entity, lineage, same domain."""
        r = self.by_name[name]
        lineage = [p for p in r.parents if p in self.by_name] + self.children.get(name, [])
        return [self.by_entity[r.entity], lineage, self.by_domain[r.domain]]

    def agent(self, index: int, cfg: PopulationConfig, seed: int) -> AgentSpec:
        """Agent ``index``: a coherent tool set grown from a tool drawn with the agent's own RNG."""
        rng = random.Random(seed_from(seed, "agent", index))
        anchor = self.records[rng.randrange(len(self.records))]
        size = rng.randint(cfg.min_tools, max(cfg.min_tools, cfg.max_tools))
        chosen = [anchor.name]
        for ring in self.rings(anchor.name):
            pool = sorted(set(ring) - set(chosen))
            rng.shuffle(pool)
            chosen += pool[: size - len(chosen)]
            if len(chosen) >= size:
                break
        domain = anchor.domain.replace("_", " ")
        prompt = (f"You are an assistant for the {domain} system. Through its API ({', '.join(chosen)}) you manage "
                  f"{anchor.entity.replace('_', ' ')} records and related work. Do exactly what the user asks with the "
                  "tools, then confirm what you did in one or two sentences.")
        return AgentSpec(name=f"a{index:05d}_{anchor.domain}"[:64], system_prompt=prompt, tools=chosen)


def make_task(agent: AgentSpec, compiled: dict[str, CompiledTool], index: int, cfg: PopulationConfig, seed: int) -> Task:
    """Task ``index`` of ``agent``: one to three requests, by its difficulty label."""
    rng = random.Random(seed_from(seed, "task", agent.name, index))
    labels = sorted(cfg.difficulty)
    label = rng.choices(labels, weights=[cfg.difficulty[k] for k in labels])[0]
    picks = rng.sample(agent.tools, k=min(DIFFICULTY_PLANS[label], len(agent.tools)))
    synth = FallbackSynthesizer(seed_from(seed, "plans", agent.name, index) >> 33)
    parts = [synth.task(compiled, AgentSpec(name=agent.name, system_prompt=agent.system_prompt, tools=[t]), k) for k, t in enumerate(picks)]
    return _combine(agent, index, seed, label, parts)


def _combine(agent: AgentSpec, index: int, seed: int, label: str, parts: list[Task]) -> Task:
    entities: dict[str, Any] = {}
    for part in parts:
        for entity, records in part.initial_state.get("entities", {}).items():
            entities.setdefault(entity, {}).update(records)
    criteria = [item["description"] for part in parts for item in part.metadata.get("rubric", [])]
    verifiable = [f"c{i}" for i, text in enumerate(criteria, start=1) if _verifiable(text, parts)]
    outputs = [o for part in parts for o in part.expected.outputs]
    instruction = " Then, ".join(p.instruction if i == 0 else p.instruction[0].lower() + p.instruction[1:] for i, p in enumerate(parts))
    return Task(
        id=f"synth-{seed}-{agent.name}-{index}",
        instruction=instruction,
        system_prompt=agent.system_prompt,
        tools=list(agent.tools),
        initial_state={"entities": entities} if entities else {},
        gold_actions=[a for part in parts for a in part.gold_actions],
        gold_answer=" ".join(["Done.", *outputs]),
        expected=Expected(outputs=outputs),
        metadata={"agent": agent.name, "rubric": rubric_items(*criteria),
                  "synth": {"source": "fallback", "seed": seed, "difficulty": label, "verifiable": verifiable}},
    )


def _verifiable(criterion: str, parts: list[Task]) -> bool:
    """Criteria checkable from the transcript alone: a named tool call, or an answer with known outputs."""
    if criterion.startswith("calls "):
        return True
    return criterion.startswith("the answer") and any(p.expected.outputs for p in parts) and "confirm" not in criterion


def gold_replay_problem(env: SimulatedToolEnv, task: Task) -> str | None:
    """Why the gold actions and answer of ``task`` fail in ``env`` (None: they pass, reward 1 where outputs are expected)."""
    try:
        env.reset(seed=0, options={"task": task})
        for i, action in enumerate(task.gold_actions):
            text = env.format.render_turn("", [ToolCall(id=f"gold_{i}", name=action.name, arguments=action.arguments)])
            obs, _, terminated, truncated, info = env.step(text)
            if info["errors"]:
                return f"gold action {i} ({action.name}) failed: " + "; ".join(getattr(m, "content", "")[:160] for m in obs.messages)
            if terminated or truncated:
                return f"the episode ended at gold action {i}"
        _, reward, _, _, _ = env.step(task.gold_answer or "Done.")
        if task.expected.outputs and reward < 1.0:
            return "the gold answer does not earn the reward"
    except ToolgymError as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def agent_env(agent: AgentSpec, compiled: dict[str, CompiledTool], tasks: Sequence[Task] | None = None, **kwargs: Any) -> SimulatedToolEnv:
    """The agent's simulated environment: its tools (compiled once), its tasks and system prompt."""
    return SimulatedToolEnv([compiled[n] for n in agent.tools], tasks=tasks, system_prompt=agent.system_prompt, **kwargs)


def tasks_for(agent_index: int, n_agents: int, n_tasks: int) -> range:
    """Indices (within the agent) of the tasks agent ``agent_index`` gets when ``n_tasks`` go round ``n_agents``."""
    return range(len(range(agent_index, n_tasks, n_agents)))


def task_rows(agents: Sequence[AgentSpec], compiled: dict[str, CompiledTool], cfg: PopulationConfig, seed: int,
              start: int, stop: int, envs: dict[str, SimulatedToolEnv] | None = None) -> list[JsonDict]:
    """Tasks ``start:stop`` of the global order (agent ``i % n``, its task ``i // n``), replayed: rows of tasks or failures.

    Args:
        envs: Agent envs to reuse across calls (a shard meets every agent; building the env is
            the costly part of a replay). Without it, envs are built here and closed at the end.
    """
    rows: list[JsonDict] = []
    owned = envs is None
    envs = {} if envs is None else envs
    for i in range(start, stop):
        agent = agents[i % len(agents)]
        try:
            task = make_task(agent, compiled, i // len(agents), cfg, seed)
        except (ToolgymError, ValueError, KeyError) as exc:
            rows.append({"failure": ItemFailure(stage="tasks", item=f"{agent.name}/{i // len(agents)}", kind="malformed_input",
                                                message=f"{type(exc).__name__}: {exc}"[:300]).model_dump(mode="json")})
            continue
        env = envs.get(agent.name) or envs.setdefault(agent.name, agent_env(agent, compiled))
        problem = gold_replay_problem(env, task)
        if problem is None:
            rows.append({"task": task.model_dump(mode="json", exclude_defaults=True)})
        else:
            rows.append({"failure": ItemFailure(stage="tasks", item=task.id, kind="gold_replay_failed", message=problem).model_dump(mode="json")})
    if owned:
        for env in envs.values():
            env.close()
    return rows


def build_agents(graph: ToolGraph, cfg: PopulationConfig, seed: int) -> tuple[list[AgentSpec], list[ItemFailure]]:
    """``cfg.agents`` agents with distinct tool sets (draws that repeat a tool set are dropped and counted)."""
    agents: list[AgentSpec] = []
    failures: list[ItemFailure] = []
    seen: set[tuple[str, ...]] = set()
    index = 0
    while len(agents) < cfg.agents and index < 3 * cfg.agents and graph.records:
        agent = graph.agent(index, cfg, seed)
        index += 1
        key = tuple(sorted(agent.tools))
        if key in seen:
            failures.append(ItemFailure(stage="agents", item=agent.name, kind="duplicate", message="the same tool set as an earlier agent"))
            continue
        seen.add(key)
        agents.append(agent)
    return agents, failures


def build_tasks(agents: Sequence[AgentSpec], compiled: dict[str, CompiledTool], cfg: PopulationConfig, seed: int,
                shard: Any) -> tuple[list[Task], list[ItemFailure]]:
    """``cfg.tasks`` tasks whose gold replays pass; shards past ``cfg.tasks`` make up for dropped ones.

    Args:
        shard: ``shard(name, compute)`` returns the rows of one shard (``StageCache.shard``).
    """
    tasks: list[Task] = []
    failures: list[ItemFailure] = []
    envs: dict[str, SimulatedToolEnv] = {}
    start, size = 0, min(cfg.shard_size, cfg.tasks)
    while len(tasks) < cfg.tasks and start < 2 * cfg.tasks + size:
        stop = start + size
        for row in shard(f"s{start // size:05d}", lambda a=start, b=stop: task_rows(agents, compiled, cfg, seed, a, b, envs)):
            if "task" in row and len(tasks) < cfg.tasks:
                tasks.append(Task.model_validate(row["task"]))
            elif "failure" in row:
                failures.append(ItemFailure.model_validate(row["failure"]))
        start = stop
    for env in envs.values():
        env.close()
    return tasks, failures
