"""Policies without a model: replay given turns (gold solutions, tests) or misbehave on purpose.

``ScriptedPolicy`` answers each request from a script chosen by task id and turn index.
``ChaosPolicy`` emits a seeded mix of garbage, unknown tools, wrong arguments and
unbalanced tags, to show (and test) that every kind of bad call comes back as data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence

from toolgym.envs.formats import ToolCallFormat, get_format
from toolgym.envs.types import AssistantMessage, Task, ToolCall
from toolgym.policy import PolicyRequest, PolicyTurn

END_OF_SCRIPT = "I have nothing more to add."


def gold_script(task: Task, tool_format: str | ToolCallFormat = "hermes") -> list[str]:
    """The task's gold solution as assistant turns: one call per turn, then the gold answer."""
    fmt = get_format(tool_format)
    turns = [
        fmt.render_turn("", [ToolCall(id=f"functions.{a.name}:{i}", name=a.name, arguments=a.arguments)])
        for i, a in enumerate(task.gold_actions)
    ]
    turns.append(task.gold_answer or task.expected.answer or "Done.")
    return turns


def _turn_index(request: PolicyRequest) -> int:
    return sum(isinstance(m, AssistantMessage) for m in request.messages)


class ScriptedPolicy:
    """Replays scripted assistant turns.

    Args:
        scripts: Turns per task id, or a function from a request to the turn text.
        default: Turns for tasks without a script of their own.

    Example:
        >>> from toolgym.rollouts import run_episodes, sample_tasks
        >>> tasks = sample_tasks("toolgym/unitconv-v0", n=2)
        >>> [e.reward for e in run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)]
        [1.0, 1.0]
    """

    def __init__(
        self,
        scripts: Mapping[str, Sequence[str]] | Callable[[PolicyRequest], str],
        default: Sequence[str] = (),
    ):
        self.scripts = scripts
        self.default = list(default)

    @classmethod
    def gold(cls, tasks: Sequence[Task], tool_format: str | ToolCallFormat = "hermes") -> ScriptedPolicy:
        """A policy that replays each task's gold actions and answer."""
        return cls({t.id: gold_script(t, tool_format) for t in tasks})

    def turn_for(self, request: PolicyRequest) -> str:
        if callable(self.scripts):
            return self.scripts(request)
        script = self.scripts.get(request.task_id or "", self.default)
        index = _turn_index(request)
        return script[index] if index < len(script) else END_OF_SCRIPT

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        return [PolicyTurn(text=self.turn_for(r)) for r in requests]


class ChaosPolicy:
    """A deliberately bad policy: a seeded mix of malformed and wrong tool calls.

    Args:
        tool_format: The format whose syntax it breaks.
        answer_rate: Chance per turn of giving up with a plain answer.
    """

    def __init__(self, tool_format: str | ToolCallFormat = "hermes", answer_rate: float = 0.1):
        self.format = get_format(tool_format)
        self.answer_rate = answer_rate

    def turn_for(self, request: PolicyRequest) -> str:
        rng = random.Random(request.seed)
        if rng.random() < self.answer_rate:
            return "I think the answer is 42."
        tools = [t.name for t in request.tools] or ["tool"]
        name = rng.choice(tools)
        moves: list[Callable[[], str]] = [
            lambda: "<tool_call>{" + "x" * rng.randint(0, 5) + "</tool_call>",
            lambda: self.format.render_turn("", [ToolCall(id="c", name=name + "_v2", arguments={})]),
            lambda: self.format.render_turn("", [ToolCall(id="c", name=name, arguments={"bogus": rng.random()})]),
            lambda: self.format.render_turn("", [ToolCall(id="c", name=name, arguments={})]),
            lambda: '<tool_call>{"name": "' + name + '", "arguments": [1, 2]}</tool_call>',
            lambda: "<tool_call>" + json.dumps({"name": name}) + "\n<tool_call>",
            lambda: "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(1, 40))) + "<|tool_call_begin|>",
        ]
        return rng.choice(moves)()

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        return [PolicyTurn(text=self.turn_for(r)) for r in requests]
