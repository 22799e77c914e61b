"""Task synthesis: deterministic fallback from schemas; policy-written JSON validated, retried, replaced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from toolgym.envs.sim import SimTool, SimulatedToolEnv
from toolgym.envs.sim.box import schema_tool
from toolgym.envs.synth import FallbackSynthesizer, LLMSynthesizer, rubric_of, synthesize
from toolgym.envs.synth.fallback import compile_all
from toolgym.policy import PolicyRequest, PolicyTurn
from toolgym.rollouts import ScriptedPolicy, run_episodes


def spec(name: str, props: dict[str, Any], required=(), returns=None, description="") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "description": description or f"Call {name}.",
                                                           "parameters": {"type": "object", "properties": props, "required": list(required)}}}
    if returns is not None:
        out["returns"] = returns
    return out


BOOK = {"type": "object", "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "year": {"type": "integer", "minimum": 1900, "maximum": 2025}}, "required": ["id", "title", "year"]}
TOOLS = [
    spec("add_book", {"title": {"type": "string"}, "year": {"type": "integer", "minimum": 1900, "maximum": 2025}}, ["title"], BOOK, "Add a book."),
    spec("get_book", {"book_id": {"type": "string"}}, ["book_id"], BOOK, "Read a book."),
    spec("update_book", {"book_id": {"type": "string"}, "title": {"type": "string"}}, ["book_id", "title"], BOOK, "Rename a book."),
    spec("remove_book", {"book_id": {"type": "string"}}, ["book_id"], None, "Remove a book."),
    spec("list_books", {}, (), {"type": "array", "items": BOOK}, "List the books."),
    spec("convert_currency", {"amount": {"type": "number"}, "to": {"enum": ["EUR", "USD"]}}, ["amount", "to"], None, "Convert money."),
]


def test_fallback_is_deterministic_from_the_seed():
    a = synthesize(TOOLS, n_agents=3, n_tasks=12, seed=5)
    assert a == synthesize(TOOLS, n_agents=3, n_tasks=12, seed=5)
    assert a.tasks != synthesize(TOOLS, n_agents=3, n_tasks=12, seed=6).tasks
    assert [x.name for x in a.agents] == ["book_agent", "currency_agent", "generalist"]


def test_fallback_tasks_are_well_formed():
    result = synthesize(TOOLS, n_agents=3, n_tasks=24, seed=1)
    tools = {t["function"]["name"]: t for t in TOOLS}
    kinds = set()
    for task in result.tasks:
        agent = next(a for a in result.agents if a.name == task.metadata["agent"])
        assert task.tools == agent.tools and task.system_prompt == agent.system_prompt
        assert len(rubric_of(task)) >= 2 and task.metadata["synth"] == {"source": "fallback", "seed": 1}
        for action in task.gold_actions:
            assert action.name in agent.tools
            schema_tool(SimTool.coerce(tools[action.name]).spec, lambda **kw: None).validate(action.arguments)
            kinds.add(action.name.split("_")[0])
    assert kinds >= {"add", "get", "update", "remove", "list", "convert"}


def test_fallback_tasks_are_solved_by_their_gold_actions_in_the_simulated_env():
    tasks = FallbackSynthesizer(seed=2).tasks(TOOLS, n=18)
    episodes = run_episodes(lambda: SimulatedToolEnv(TOOLS), ScriptedPolicy.gold(tasks), tasks=tasks)
    assert all(e.error_counts() == {} for e in episodes), [e.error_counts() for e in episodes]
    checked = [e for e in episodes if e.task.expected.outputs]
    assert checked and all(e.reward == 1.0 for e in checked)


def test_env_without_tasks_samples_synthesized_ones():
    env = SimulatedToolEnv(TOOLS)
    _, info = env.reset(seed=4)
    assert info["task_id"].startswith("synth-") and env.task.metadata["rubric"]


class JsonPolicy:
    """Answers synthesis prompts from a list of replies (cycled), recording the requests."""

    def __init__(self, *replies: Any):
        self.replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.requests: list[PolicyRequest] = []

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        out = []
        for r in requests:
            out.append(PolicyTurn(text=self.replies[min(len(self.requests), len(self.replies) - 1)]))
            self.requests.append(r)
        return out


AGENTS = {"agents": [{"name": "librarian", "system_prompt": "You manage books.", "tools": ["add_book", "get_book"]}]}
TASKS = {"tasks": [{"instruction": "Add 'Dune' from 1965.", "rubric": ["adds Dune", "says it is done"],
                    "gold_actions": [{"name": "add_book", "arguments": {"title": "Dune", "year": 1965}}]}] * 2}


def test_policy_json_becomes_agents_and_tasks():
    result = synthesize(TOOLS, JsonPolicy(AGENTS, TASKS), n_agents=1, n_tasks=2, seed=0)
    assert result.fallbacks == 0 and result.agents[0].source == "llm" and result.agents[0].tools == ["add_book", "get_book"]
    task = result.tasks[0]
    assert task.instruction == "Add 'Dune' from 1965." and task.metadata["synth"]["source"] == "llm"
    assert rubric_of(task) == ["adds Dune", "says it is done"]
    assert task.gold_actions[0].arguments == {"title": "Dune", "year": 1965}


def test_invalid_json_is_retried_with_the_problem_stated():
    typo = {"agents": [{"name": "librarian", "system_prompt": "x", "tools": ["add_bok"]}]}
    policy = JsonPolicy(typo, AGENTS, TASKS)
    result = synthesize(TOOLS, policy, n_agents=1, n_tasks=1)
    assert result.fallbacks == 0 and result.agents[0].source == "llm"
    assert "unknown tool 'add_bok'. Did you mean 'add_book'" in policy.requests[1].messages[-1].content


@pytest.mark.parametrize("bad_tasks", [
    "no json here",
    {"tasks": [{"instruction": "x", "rubric": ["r"], "gold_actions": [{"name": "add_book", "arguments": {"year": 1}}]}]},
    {"tasks": [{"instruction": "x", "rubric": [], "gold_actions": []}]},
])
def test_persistent_failure_falls_back_and_is_counted(bad_tasks):
    policy = JsonPolicy(AGENTS, bad_tasks)
    synth = LLMSynthesizer(policy, seed=3, attempts=2)
    result = asyncio.run(synth.synthesize(TOOLS, n_agents=1, n_tasks=2))
    assert result.fallbacks == 2 and len(policy.requests) == 3  # 1 agents request, 2 task attempts
    assert [t.metadata["synth"]["source"] for t in result.tasks] == ["fallback", "fallback"]
    compiled = {c.name: c for c in compile_all(TOOLS)}
    assert result.tasks == [FallbackSynthesizer(3).task(compiled, result.agents[0], j) for j in range(2)]


def test_a_policy_that_never_answers_well_gives_the_fallback_agents():
    result = synthesize(TOOLS, JsonPolicy("nope"), n_agents=2, n_tasks=2, seed=9)
    assert result.agents == FallbackSynthesizer(9).agents(TOOLS, 2) and result.fallbacks == 3
