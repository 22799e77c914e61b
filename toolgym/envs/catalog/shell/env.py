"""``ShellTaskEnv``: the shell task catalog in a real sandbox (``toolgym/shell-v0``).

>>> import toolgym
>>> env = toolgym.make("toolgym/shell-v0", backend="bwrap")   # doctest: +SKIP
>>> obs, info = env.reset(seed=0)                             # doctest: +SKIP

When an episode ends the env measures the workspace (``report.measure``): the files the task
expects and the outcome of its check command. The result goes to ``info["episode_metadata"]
["shell"]`` (the rollout loop copies it to ``Episode.metadata``, where the ``files_as_expected``
and ``tests_pass`` checks read it), and the env's own reward is 1.0 only when every expected
file matches, the check passes and the final answer holds every required output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolgym.envs.catalog.shell.report import ShellOutcome, measure, outcome_passes
from toolgym.envs.catalog.shell.tasks import generate_task
from toolgym.envs.shell.env import ShellEnv
from toolgym.envs.shell.runtime import run_sync
from toolgym.envs.types import Task

HERE = Path(__file__).parent


class ShellTaskEnv(ShellEnv):
    """Shell tasks (files, command output, tests, logs, text/CSV, git, permissions, archives).

    Args:
        **kwargs: Those of ``ShellEnv``: ``backend`` ("bwrap", "docker", "local"), ``limits``,
            ``sandbox_options``, ``tasks``...
    """

    task_generator = staticmethod(generate_task)
    eval_split = HERE / "eval.jsonl"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.report: ShellOutcome | None = None

    def sample_task(self, rng: np.random.Generator) -> Task:
        if self.tasks:
            return super().sample_task(rng)
        return generate_task(int(rng.integers(2**31)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.report = None
        return super().reset(seed=seed, options=options)

    def measure(self) -> ShellOutcome:
        """Measure the workspace against the current task now (also done when an episode ends)."""
        assert self.task is not None
        self.report = run_sync(measure(self._require(), self.task))
        return self.report

    def outcome_reward(self) -> float:
        """1.0 when the expected files, the check and the required outputs all hold, else 0.0."""
        if self.task is None:
            return 0.0
        report = self.measure()
        return float(outcome_passes(self.task, report, self.final_answer))

    def _finish_step(self, *args: Any, **kwargs: Any) -> Any:
        obs, reward, terminated, truncated, info = super()._finish_step(*args, **kwargs)
        if (terminated or truncated) and self.report is not None:
            info["episode_metadata"] = {"shell": self.report.as_metadata()}
        return obs, reward, terminated, truncated, info
