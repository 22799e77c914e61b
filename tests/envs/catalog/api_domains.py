"""Helpers shared by the tests of the shipped API domains (retail, calendar_email, banking)."""

from __future__ import annotations

import json
from typing import Any

import toolgym
from toolgym.envs.types import Task, ToolCall, ToolMessage

DOMAINS = ("toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0")


def call(env: Any, name: str, **arguments: Any) -> ToolMessage:
    """Step ``env`` with one tool call rendered in its format; the tool's observation."""
    obs, *_ = env.step(env.format.render_turn("", [ToolCall(id="t", name=name, arguments=arguments)]))
    (message,) = obs.messages
    return message


def output(message: ToolMessage) -> Any:
    """The JSON output of a successful call (fails the test with the error otherwise)."""
    if message.error is not None:
        raise AssertionError(f"{message.name} failed: {message.content}")
    return json.loads(message.content)


def replay_gold(env: Any, task: Task) -> tuple[float, bool, str]:
    """Reset to ``task``, step every gold action as text, then the gold answer.

    Returns the final reward, whether the episode terminated, and the final state digest.
    Fails on the first gold action that errors: a gold solution never should.
    """
    env.reset(options={"task": task})
    for action in task.gold_actions:
        message = call(env, action.name, **action.arguments)
        if message.error is not None:
            raise AssertionError(f"{task.id}: gold action {action.name} failed: {message.content}")
    _, reward, terminated, truncated, info = env.step(task.gold_answer)
    return reward, terminated and not truncated, info["state_digest"]


def make(env_id: str) -> Any:
    return toolgym.make(env_id)


def env_with(env_id: str, family: str, split: str = "eval", steps: int = 1) -> tuple[Any, Task]:
    """An env reset to the first ``family`` task of ``split``, after its first ``steps`` gold actions."""
    env = make(env_id)
    generate = type(env).task_generator
    task = next(t for t in (generate(i, split) for i in range(500)) if t.metadata["family"] == family)
    env.reset(options={"task": task})
    for action in task.gold_actions[:steps]:
        output(call(env, action.name, **action.arguments))
    return env, task


def refused(message: ToolMessage, fragment: str) -> bool:
    """The tool refused the call (a policy rule or a missing record), with a message containing ``fragment``."""
    return message.error in ("policy_violation", "tool_exception") and fragment in message.content
