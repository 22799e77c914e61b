"""Checks on the world the episode left behind."""

from __future__ import annotations

from typing import Any

from toolgym.envs.types import Task
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.checks.base import CheckUnscorable
from toolgym.rubrics.gold import DEFAULT_REPLAYER, GoldReplayer


def final_state_matches_gold(task: Task, episode: Episode, env: Any = None) -> float | None:
    """1.0 when the final state digest equals the state the gold actions reach, else 0.0.

    The reference comes from replaying ``task.gold_actions`` on a fresh ``episode.env_id``
    (cached); a task without gold actions falls back to ``task.expected.state_digest``.

    Args:
        task: The task (normally ``episode.task``).
        episode: The episode to judge.
        env: A fresh environment to replay in, instead of one made from the registry.

    Returns:
        None when the task has neither gold actions nor an expected digest.

    Raises:
        CheckUnscorable: the episode recorded no final state digest.
    """
    if task.gold_actions:
        replayer = DEFAULT_REPLAYER if env is None else GoldReplayer(make_env=lambda _id: env)
        target = replayer.digest(episode.env_id, task, episode.seed)
    elif task.expected.state_digest is not None:
        target = task.expected.state_digest
    else:
        return None
    if episode.final_state_digest is None:
        raise CheckUnscorable(f"episode {episode.id!r} recorded no final_state_digest (stop reason {episode.stop_reason.value})")
    return float(episode.final_state_digest == target)
