"""toolgym: tool-use reinforcement-learning environments for language-model agents.

>>> import toolgym
>>> env = toolgym.make("toolgym/unitconv-v0")
>>> obs, info = env.reset(seed=0)

Importing toolgym loads pydantic and gymnasium only; torch and ray load when a policy or
pool that needs them is built.
"""

from __future__ import annotations

from typing import Any

from toolgym.envs import (
    AssistantMessage,
    Message,
    Observation,
    StopReason,
    Task,
    ToolCall,
    ToolEnv,
    ToolResult,
    ToolSpec,
    check_env,
    make,
    register,
    tool,
)
from toolgym.envs.catalog import register_catalog

__version__ = "0.1.0"

register_catalog()

_LAZY = {
    "Episode": "toolgym.rollouts.episode",
    "run_episodes": "toolgym.rollouts.loop",
    "ScriptedPolicy": "toolgym.policies.scripted",
    "Policy": "toolgym.policy",
    "Rubric": "toolgym.rubrics.rubric",
    "Score": "toolgym.rubrics.score",
    "register_check": "toolgym.rubrics.checks.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolgym' has no attribute {name!r}")


__all__ = [
    "AssistantMessage", "Episode", "Message", "Observation", "Policy", "Rubric", "Score", "ScriptedPolicy", "StopReason",
    "Task", "ToolCall", "ToolEnv", "ToolResult", "ToolSpec", "check_env", "make", "register",
    "register_check", "run_episodes", "tool",
]
