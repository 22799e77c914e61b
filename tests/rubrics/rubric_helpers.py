"""Helpers for rubric tests: episodes from scripted turns, synthetic episodes, fake judge policies."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence

import toolgym  # noqa: F401  (registers the shipped envs the helpers name)
from toolgym.envs.types import AssistantMessage, StopReason, Task, ToolCall, ToolMessage, UserMessage
from toolgym.policies.scripted import gold_script
from toolgym.policy import PolicyError, PolicyRequest, PolicyTurn
from toolgym.rollouts import Episode, ScriptedPolicy, run_episodes

ENV = "toolgym/unitconv-v0"


def call(tool: str, /, **arguments) -> str:
    """One Hermes tool-call turn."""
    return f'<tool_call>{json.dumps({"name": tool, "arguments": arguments})}</tool_call>'


def play(task: Task, turns: Sequence[str], **kwargs) -> Episode:
    """Run ``task`` with scripted assistant turns."""
    return run_episodes(ENV, ScriptedPolicy({task.id: list(turns)}), tasks=[task], **kwargs)[0]


def gold_episode(task: Task) -> Episode:
    return play(task, gold_script(task))


def synthetic(messages: list, *, task: Task | None = None, final_answer: str = "", metadata: dict | None = None, **fields) -> Episode:
    """An episode built by hand (for contracts no shipped env produces yet, like shell reports)."""
    task = task or Task(id="synthetic", instruction="do it")
    return Episode(
        id=fields.pop("id", "ep"), env_id=fields.pop("env_id", ENV), task=task, seed=0,
        messages=[UserMessage(content=task.instruction), *messages], stop_reason=fields.pop("stop_reason", StopReason.ANSWERED),
        final_answer=final_answer, metadata=metadata or {}, **fields,
    )


def tool_exchange(name: str, arguments: dict, content: str, call_id: str = "c1", error: str | None = None) -> list:
    return [
        AssistantMessage(tool_calls=[ToolCall(id=call_id, name=name, arguments=arguments)]),
        ToolMessage(tool_call_id=call_id, name=name, content=content, error=error),
    ]


class FakeJudge:
    """A deterministic judge policy: answers each request with ``respond(prompt_text)``.

    Records requests and the most requests in flight at once; ``delay_s`` makes it slow.
    """

    def __init__(self, respond: Callable[[str], str | PolicyTurn], delay_s: float = 0.0):
        self.respond = respond
        self.delay_s = delay_s
        self.requests: list[PolicyRequest] = []
        self.in_flight = 0
        self.peak = 0

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        self.requests.extend(requests)
        self.in_flight += len(requests)
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            out = []
            for r in requests:
                reply = self.respond(r.messages[-1].content)
                out.append(reply if isinstance(reply, PolicyTurn) else PolicyTurn(text=reply, prompt_token_ids=[1] * 10, token_ids=[2] * 3))
            return out
        finally:
            self.in_flight -= len(requests)


def criterion_ids(prompt: str) -> list[str]:
    """The criterion ids listed in a judge prompt."""
    return re.findall(r"^- id: (\S+)$", prompt, flags=re.MULTILINE)


def pointwise_reply(score_of: Callable[[str, str], float]) -> Callable[[str], str]:
    """A judge reply function scoring each listed criterion with ``score_of(criterion, prompt)``."""

    def respond(prompt: str) -> str:
        items = [{"id": cid, "score": score_of(cid, prompt), "rationale": "fake"} for cid in criterion_ids(prompt)]
        return "Here is my verdict:\n```json\n" + json.dumps({"criteria": items}) + "\n```"

    return respond


def endpoint_error(_: str) -> PolicyTurn:
    return PolicyTurn(finish_reason="error", error=PolicyError(kind="endpoint_error", message="503 from judge"))
