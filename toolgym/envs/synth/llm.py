"""``LLMSynthesizer``: a policy writes agents and tasks with rubrics (Kimi K2 style).

The policy is asked for JSON (agents: name, system prompt, tool subset; tasks: instruction,
rubric criteria, gold tool calls). Every reply is parsed and validated (tool names exist,
gold arguments fit the tool schemas); an invalid reply is asked again with the problem stated,
and after the last attempt the deterministic ``FallbackSynthesizer`` fills in, counted in
``fallbacks``. Requests for all agents go to the policy as one batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.aio import loop_needed, run_sync
from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import canonical_json
from toolgym.envs.sim.box import schema_tool
from toolgym.envs.sim.spec import CompiledTool, SimTool
from toolgym.envs.synth.fallback import FallbackSynthesizer, compile_all
from toolgym.envs.synth.models import AgentSpec, SynthResult, rubric_items
from toolgym.envs.tools import ArgumentError
from toolgym.envs.types import AssistantMessage, GoldAction, SystemMessage, Task, ToolSpec, UserMessage
from toolgym.errors import did_you_mean
from toolgym.policy import Policy, PolicyError, PolicyRequest, PolicyTurn, SamplingParams

T = TypeVar("T")
SYSTEM = "You design training data for tool-using assistants. Reply with one JSON object and nothing else."
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class _DraftTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    instruction: str = Field(min_length=1)
    rubric: list[str] = Field(min_length=1, max_length=8)
    gold_actions: list[GoldAction] = Field(default_factory=list)


def parse_json(text: str) -> Any:
    """The JSON object in a reply (code fences and text around it ignored); ``ValueError`` if none."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object found")
    try:
        return json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None


class LLMSynthesizer:
    """Agents and tasks written by a policy, validated, with a deterministic fallback.

    Args:
        policy: Writes the JSON.
        seed: Seeds the requests and the fallback.
        attempts: Requests per item before falling back.
        sampling: Sampling of the policy's replies.
    """

    def __init__(self, policy: Policy, *, seed: int = 0, attempts: int = 3, sampling: SamplingParams | None = None):
        self.policy = policy
        self.seed = seed
        self.attempts = attempts
        self.sampling = sampling or SamplingParams(temperature=0.7, max_new_tokens=1024)
        self.fallback = FallbackSynthesizer(seed)
        self.fallbacks = 0
        """Agents and tasks the fallback had to write."""

    async def synthesize(self, tools: Sequence[SimTool | ToolSpec | dict[str, Any]], *, n_agents: int = 3, n_tasks: int = 8) -> SynthResult:
        """``n_agents`` agents, then ``n_tasks`` tasks spread over them."""
        compiled = {c.name: c for c in compile_all(tools)}
        agents = await self.agents(compiled, n_agents)
        tasks = await self.tasks(compiled, agents, n_tasks)
        return SynthResult(agents=agents, tasks=tasks, fallbacks=self.fallbacks)

    async def agents(self, compiled: dict[str, CompiledTool], n: int) -> list[AgentSpec]:
        """Agents from one request; the fallback's if the policy gives no valid list."""
        prompt = (
            f"Design {n} distinct assistant agents that use the tools below. Each has a name (letters, digits, _ or -), "
            'a system prompt, and the subset of tool names it may use. Reply as {"agents": [{"name": "...", '
            '"system_prompt": "...", "tools": ["..."]}]}.\nTools:\n' + _describe(compiled.values())
        )
        (agents,) = await self._ask([prompt], [lambda v: _check_agents(v, compiled, n)], "agents")
        if agents is None:
            self.fallbacks += 1
            return self.fallback.agents([c.tool for c in compiled.values()], n)
        return agents

    async def tasks(self, compiled: dict[str, CompiledTool], agents: Sequence[AgentSpec], n: int) -> list[Task]:
        """``n`` tasks, agents in turn; an agent whose reply is invalid gets fallback tasks."""
        counts = [len(range(i, n, len(agents))) for i in range(len(agents))]
        prompts = [_task_prompt(agent, compiled, k) for agent, k in zip(agents, counts, strict=True)]
        checks = [_tasks_check(agent, compiled, k) for agent, k in zip(agents, counts, strict=True)]
        drafts = await self._ask(prompts, checks, "tasks")
        by_agent: list[list[Task]] = []
        for agent, k, valid in zip(agents, counts, drafts, strict=True):
            if valid is None:
                self.fallbacks += k
                by_agent.append([self.fallback.task(compiled, agent, j) for j in range(k)])
            else:
                by_agent.append([self._task(agent, j, d) for j, d in enumerate(valid)])
        return [by_agent[i % len(agents)][i // len(agents)] for i in range(n)]

    def _task(self, agent: AgentSpec, index: int, draft: _DraftTask) -> Task:
        return Task(
            id=f"synth-{self.seed}-{agent.name}-{index}", instruction=draft.instruction, system_prompt=agent.system_prompt,
            tools=list(agent.tools), gold_actions=draft.gold_actions,
            metadata={"agent": agent.name, "rubric": rubric_items(*draft.rubric), "synth": {"source": "llm", "seed": self.seed}},
        )

    async def _ask(self, prompts: list[str], checks: list[Callable[[Any], T]], label: str) -> list[T | None]:
        """One batched request per round for every prompt still without a valid reply.

        ``checks[i]`` turns the JSON of reply ``i`` into the result or raises ``ValueError``
        (or ``ValidationError``) with the problem, which the next round's prompt states.
        """
        base = {i: [SystemMessage(content=SYSTEM), UserMessage(content=p)] for i, p in enumerate(prompts)}
        convo: dict[int, list[Any]] = dict(base)
        results: list[T | None] = [None] * len(prompts)
        for attempt in range(self.attempts):
            if not convo:
                break
            order = sorted(convo)
            requests = [PolicyRequest(episode_id=f"synth/{label}/{i}", messages=convo[i], seed=seed_from(self.seed, label, i, attempt) >> 1, sampling=self.sampling) for i in order]
            await loop_needed()
            try:
                turns = await self.policy.generate(requests)
            except Exception as exc:  # policies should not raise; if one does, every request of the round failed
                turns = [PolicyTurn(finish_reason="error", error=PolicyError(kind="model_error", message=str(exc)[:200])) for _ in order]
            for i, turn in zip(order, turns, strict=True):
                try:
                    if turn.error is not None:
                        raise ValueError(f"policy error ({turn.error.kind})")
                    results[i] = checks[i](parse_json(turn.text))
                    del convo[i]
                except (ValueError, ValidationError) as exc:
                    feedback = f"That reply was unusable: {str(exc)[:300]}\nReply again with the JSON object only."
                    convo[i] = [*base[i], AssistantMessage(content=turn.text[:2000]), UserMessage(content=feedback)]
        return results


def _describe(tools: Any) -> str:
    return "\n".join(f"- {c.name}: {c.tool.spec.function.description} Parameters: {canonical_json(c.params)}" for c in tools)


def _task_prompt(agent: AgentSpec, compiled: dict[str, CompiledTool], k: int) -> str:
    return (
        f"Write {k} realistic tasks that a user could give this agent.\nAgent system prompt: {agent.system_prompt}\n"
        f"Its tools:\n{_describe(compiled[n] for n in agent.tools)}\n"
        "Each task has an instruction (what the user asks), a rubric (2 to 6 criteria, one sentence each, checkable from "
        "the conversation) and gold_actions (the tool calls that solve it). Reply as "
        '{"tasks": [{"instruction": "...", "rubric": ["..."], "gold_actions": [{"name": "...", "arguments": {}}]}]}.'
    )


def _check_agents(value: Any, compiled: dict[str, CompiledTool], n: int) -> list[AgentSpec]:
    if not isinstance(value, dict) or not isinstance(value.get("agents"), list) or not value["agents"]:
        raise ValueError('expected {"agents": [...]} with at least one agent')
    if not all(isinstance(a, dict) for a in value["agents"]):
        raise ValueError("each agent must be an object with name, system_prompt and tools")
    agents = [AgentSpec.model_validate({**a, "source": "llm"}) for a in value["agents"][:n]]
    for agent in agents:
        for name in agent.tools:
            if name not in compiled:
                raise ValueError(f"agent {agent.name!r} lists unknown tool {name!r}.{did_you_mean(name, compiled)}")
    if len({a.name for a in agents}) < len(agents):
        raise ValueError("agent names must be unique")
    return agents


def _tasks_check(agent: AgentSpec, compiled: dict[str, CompiledTool], k: int) -> Callable[[Any], list[_DraftTask]]:
    return lambda value: _check_tasks(value, agent, compiled, k)


def _check_tasks(value: Any, agent: AgentSpec, compiled: dict[str, CompiledTool], k: int) -> list[_DraftTask]:
    if not isinstance(value, dict) or not isinstance(value.get("tasks"), list) or len(value["tasks"]) < k:
        raise ValueError(f'expected {{"tasks": [...]}} with {k} tasks')
    drafts = [_DraftTask.model_validate(t) for t in value["tasks"][:k]]
    for draft in drafts:
        for action in draft.gold_actions:
            if action.name not in agent.tools:
                raise ValueError(f"gold action calls {action.name!r}, which agent {agent.name!r} does not have")
            try:
                schema_tool(compiled[action.name].tool.spec, lambda **kw: None).validate(action.arguments)
            except ArgumentError as exc:
                raise ValueError(str(exc)) from None
    return drafts


async def asynthesize(
    tools: Sequence[SimTool | ToolSpec | dict[str, Any]], policy: Policy | None = None, *, n_agents: int = 3, n_tasks: int = 8, seed: int = 0
) -> SynthResult:
    """Agents and tasks for ``tools``: by ``policy`` when given, else by the fallback alone."""
    if policy is not None:
        return await LLMSynthesizer(policy, seed=seed).synthesize(tools, n_agents=n_agents, n_tasks=n_tasks)
    fallback = FallbackSynthesizer(seed)
    agents = fallback.agents(tools, n_agents)
    return SynthResult(agents=agents, tasks=fallback.tasks(tools, n_tasks, agents))


def synthesize(tools: Sequence[SimTool | ToolSpec | dict[str, Any]], policy: Policy | None = None, **kwargs: Any) -> SynthResult:
    """``asynthesize`` from sync code (same arguments)."""
    return run_sync(asynthesize(tools, policy, **kwargs))
