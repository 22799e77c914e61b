"""Synthesized training conversations: shipped tasks replayed with their gold solutions.

Every shipped domain generates seeded tasks that carry a reference solution (one call per
turn and a final answer). Replaying it through the environment gives a real conversation,
tool results included, that a tiny policy can be pretrained or fine-tuned on.

``compact_task`` shortens a task's prompt the way the demo does: a one-line system prompt and
only the tools the gold solution uses, so the prompt is tens of tokens, not hundreds.

>>> convs = gold_conversations("toolgym/unitconv-v0", range(2))
>>> [m.role for m in convs[0].messages][:3]
['system', 'user', 'assistant']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from toolgym.envs.types import Message, Task, ToolCall, ToolSpec

SHORT_PROMPTS: dict[str, str] = {
    "toolgym/unitconv-v0": "You convert units with tools, store results and report them.",
    "toolgym/retail-v0": "You are a shop support agent. Use the tools and follow shop policy.",
    "toolgym/calendar_email-v0": "You manage the user's calendar and email with the tools.",
    "toolgym/banking-v0": "You are a bank support agent. Verify the caller, then use the tools.",
}
"""One-line system prompts per shipped domain (the long policy texts cost hundreds of tokens)."""

DOMAINS = tuple(SHORT_PROMPTS)


@dataclass(frozen=True)
class Conversation:
    """A finished gold conversation: its messages, the tools it offered and its task."""

    messages: list[Message]
    tools: list[ToolSpec]
    task: Task


def compact_task(task: Task, env_id: str) -> Task:
    """``task`` with a one-line system prompt and only the tools its gold solution calls."""
    used: list[str] = []
    for action in task.gold_actions:
        if action.name not in used:
            used.append(action.name)
    return task.model_copy(update={"system_prompt": SHORT_PROMPTS.get(env_id, task.system_prompt), "tools": used or task.tools})


def replay_gold(env: Any, task: Task, tool_format: Any) -> Conversation:
    """Run ``task`` in ``env`` (made with ``tool_format``'s name) with its gold calls and answer."""
    obs, _ = env.reset(options={"task": task})
    for i, gold in enumerate(task.gold_actions):
        call = ToolCall(id=f"functions.{gold.name}:{i}", name=gold.name, arguments=gold.arguments)
        _, _, done, truncated, _ = env.step(tool_format.render_turn("", [call]))
        if done or truncated:
            break
    else:
        env.step(task.gold_answer or "Done.")
    return Conversation(messages=list(env.messages), tools=list(obs.tools), task=task)


def gold_conversations(
    env_id: str, seeds: Iterable[int], *, keep: Callable[[Task], bool] | None = None, compact: bool = True,
    tool_format: str = "kimi_k2",
) -> list[Conversation]:
    """Gold replays of the tasks ``env_id`` generates for ``seeds`` (those ``keep`` accepts).

    Args:
        env_id: A shipped environment id.
        seeds: Reset seeds; each gives one task.
        keep: Filter on the generated task (for example, one task family).
        compact: Shorten prompts with ``compact_task``.
        tool_format: How assistant turns encode calls (the compact template reads "kimi_k2").
    """
    import toolgym
    from toolgym.envs.formats import get_format

    env, fmt = toolgym.make(env_id, tool_format=tool_format), get_format(tool_format)
    out: list[Conversation] = []
    for seed in seeds:
        env.reset(seed=seed)
        task = env.task
        assert task is not None
        if keep is not None and not keep(task):
            continue
        if not task.gold_actions:
            continue
        out.append(replay_gold(env, compact_task(task, env_id) if compact else task, fmt))
    env.close()
    return out
