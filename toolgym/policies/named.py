"""Policies by name, for the command line: ``scripted``, ``chaos``, ``hf``, ``openai``.

Each builder takes the same ``PolicyOptions`` and returns a ``Policy``; torch and httpx load
only for the builders that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from toolgym.envs.types import Task
from toolgym.errors import ConfigError, did_you_mean
from toolgym.policy import Policy


@dataclass
class PolicyOptions:
    """What a named policy may need."""

    tasks: Sequence[Task]
    """The tasks about to run (scripted policies replay their gold solutions)."""
    tool_format: str = "hermes"
    model: str | None = None
    """``hf``: a local model folder; ``openai``: the model name sent."""
    base_url: str | None = None
    """``openai``: the endpoint, e.g. http://127.0.0.1:8000/v1."""
    max_batch_size: int = 32


def _scripted(o: PolicyOptions) -> Policy:
    from toolgym.policies.scripted import ScriptedPolicy

    return ScriptedPolicy.gold(o.tasks, o.tool_format)


def _chaos(o: PolicyOptions) -> Policy:
    from toolgym.policies.scripted import ChaosPolicy

    return ChaosPolicy(o.tool_format)


def _hf(o: PolicyOptions) -> Policy:
    from toolgym.policies.hf_policy import HFPolicy

    if not o.model:
        raise ConfigError("--policy hf needs --model: a local model folder (or, on the command line, tiny-kimi / tiny-qwen3)")
    return HFPolicy.from_pretrained(o.model, max_batch_size=o.max_batch_size)


def _openai(o: PolicyOptions) -> Policy:
    from toolgym.policies.openai_policy import OpenAIPolicy

    if not o.base_url:
        raise ConfigError("--policy openai needs --base-url, e.g. http://127.0.0.1:8000/v1 (see `toolgym serve`)")
    return OpenAIPolicy(o.base_url, o.model or "", tool_format=o.tool_format)


POLICIES: dict[str, Callable[[PolicyOptions], Policy]] = {
    "scripted": _scripted,
    "chaos": _chaos,
    "hf": _hf,
    "openai": _openai,
}


def make_policy(name: str, options: PolicyOptions) -> Policy:
    """Build the policy called ``name`` (one of ``POLICIES``)."""
    builder = POLICIES.get(name)
    if builder is None:
        raise ConfigError(f"unknown policy {name!r}.{did_you_mean(name, POLICIES)} Known: {', '.join(POLICIES)}.")
    return builder(options)
