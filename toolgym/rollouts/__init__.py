"""How an episode is produced: policies, the batched episode loop, and episode storage."""

from toolgym.rollouts.batcher import RequestBatcher
from toolgym.rollouts.episode import Episode, Failure, TurnRecord
from toolgym.rollouts.loop import arun_episodes, derive_seed, run_episodes, sample_tasks
from toolgym.rollouts.policy import Policy, PolicyError, PolicyRequest, PolicyTurn, SamplingParams
from toolgym.rollouts.scripted import ChaosPolicy, ScriptedPolicy, gold_script
from toolgym.rollouts.storage import load_episodes, save_episodes

__all__ = [
    "ChaosPolicy", "Episode", "Failure", "Policy", "PolicyError", "PolicyRequest", "PolicyTurn",
    "RequestBatcher", "SamplingParams", "ScriptedPolicy", "TurnRecord", "arun_episodes", "derive_seed",
    "gold_script", "load_episodes", "run_episodes", "sample_tasks", "save_episodes",
]
