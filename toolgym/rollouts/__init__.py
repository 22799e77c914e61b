"""How an episode is produced: the batched episode loop, env pools (local and Ray), rows and storage.

Policies live in ``toolgym.policies``; the names used most with rollouts are re-exported here.
"""

from typing import Any

from toolgym.envs.canonical import seed_from
from toolgym.policies.scripted import ChaosPolicy, ScriptedPolicy, gold_script
from toolgym.policy import Policy, PolicyError, PolicyRequest, PolicyTurn, SamplingParams
from toolgym.rollouts.batcher import RequestBatcher
from toolgym.rollouts.episode import Episode, Failure, Segment, TurnRecord
from toolgym.rollouts.loop import arun_episodes, run_episodes, sample_tasks
from toolgym.rollouts.partial import PartialRollouts
from toolgym.rollouts.pool import EnvPool, LocalEnvPool, make_pool
from toolgym.rollouts.rows import TokenRow, collate, episode_to_rows, episodes_to_rows
from toolgym.rollouts.storage import load_episodes, save_episodes

derive_seed = seed_from
"""The name this package has always exported for ``toolgym.envs.canonical.seed_from`` (the same function)."""

_LAZY = {  # these import torch, transformers or httpx when first used
    "HFPolicy": "toolgym.policies.hf_policy",  # re-exported from toolgym.policies
    "OpenAIPolicy": "toolgym.policies.openai_policy",
    "serve": "toolgym.policies.serve",
    "RayEnvPool": "toolgym.rollouts.ray_pool",  # imports ray
    "RayPoolConfig": "toolgym.rollouts.ray_pool",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolgym.rollouts' has no attribute {name!r}")


__all__ = [
    "HFPolicy", "OpenAIPolicy", "serve", "RayEnvPool", "RayPoolConfig",
    "EnvPool", "LocalEnvPool", "PartialRollouts", "Segment", "make_pool",
    "ChaosPolicy", "Episode", "Failure", "Policy", "PolicyError", "PolicyRequest", "PolicyTurn",
    "RequestBatcher", "SamplingParams", "ScriptedPolicy", "TokenRow", "TurnRecord", "arun_episodes", "collate",
    "derive_seed", "episode_to_rows", "episodes_to_rows", "seed_from",
    "gold_script", "load_episodes", "run_episodes", "sample_tasks", "save_episodes",
]
