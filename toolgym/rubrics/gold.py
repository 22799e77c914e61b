"""The state a task's gold actions reach, found by replaying them on a fresh environment.

Replaying (rather than trusting ``task.expected.state_digest``) keeps the check honest when an
environment changes: the reference moves with the code. Replays are cached per environment,
task content and seed, so scoring a GRPO group of K siblings replays once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from toolgym.envs.digest import digest
from toolgym.envs.registry import make
from toolgym.envs.types import Task, ToolCall
from toolgym.errors import ToolgymError

EnvFactory = Callable[[str], Any]


class GoldReplayError(ToolgymError, RuntimeError):
    """A gold action failed on replay: the task or the environment is broken, not the model."""


class GoldReplayer:
    """Replays gold actions and caches the resulting state digest.

    Args:
        make_env: Builds an environment from its id (default: the registry's ``make``).
        max_entries: Cache size; the oldest entries go first.
    """

    def __init__(self, make_env: EnvFactory = make, max_entries: int = 65536):
        self.make_env = make_env
        self.max_entries = max_entries
        self._cache: dict[tuple[str, str, int], str] = {}
        self._lock = threading.Lock()
        self.replays = 0
        """How many replays actually ran (cache misses)."""

    def digest(self, env_id: str, task: Task, seed: int = 0) -> str:
        """``state_digest()`` after the gold actions of ``task`` in a fresh ``env_id``.

        Raises:
            GoldReplayError: a gold action produced an error observation or the episode ended early.
        """
        key = (env_id, task_fingerprint(task), seed)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = self._replay(env_id, task, seed)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = value
        return value

    def _replay(self, env_id: str, task: Task, seed: int) -> str:
        self.replays += 1
        env = self.make_env(env_id)
        try:
            env.reset(seed=seed, options={"task": task})
            for i, action in enumerate(task.gold_actions):
                text = env.format.render_turn("", [ToolCall(id=f"gold_{i}", name=action.name, arguments=action.arguments)])
                obs, _, _, _, info = env.step(text)
                if info["errors"]:
                    detail = "; ".join(getattr(m, "content", "") for m in obs.messages)
                    raise GoldReplayError(f"task {task.id!r}: gold action {i} ({action.name}) failed on replay in {env_id}: {detail}")
            return env.state_digest()
        except ToolgymError as exc:
            if isinstance(exc, GoldReplayError):
                raise
            raise GoldReplayError(f"task {task.id!r}: gold replay in {env_id} stopped: {exc}") from exc
        finally:
            env.close()


def task_fingerprint(task: Task) -> str:
    """Digest of the parts of a task that decide where its gold actions lead."""
    return digest(task.model_dump(mode="json", include={"id", "initial_state", "tools", "limits", "gold_actions"}))


DEFAULT_REPLAYER = GoldReplayer()
"""The replayer the ``final_state_matches_gold`` check uses unless given another."""
