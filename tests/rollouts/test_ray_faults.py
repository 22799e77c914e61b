"""An env actor killed in the middle of a rollout loses no episode."""

from __future__ import annotations

import os
import signal
import sys

import cloudpickle
import pytest

from toolgym.envs.catalog.unitconv.env import UnitConvEnv
from toolgym.envs.tools import tool
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks

ray = pytest.importorskip("ray")
from toolgym.rollouts.ray_pool import RayEnvPool

UNITCONV = "toolgym/unitconv-v0"


def without_timings(episode):
    """A survivor records its retries in ``metadata``; everything else must equal a clean run."""
    return episode.without_timings(exclude={"metadata"})


def test_killing_an_actor_mid_rollout_accounts_for_all_1000_episodes(ray_local):
    tasks = sample_tasks(UNITCONV, n=1000, seed=0)
    clean = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks)
    done: list[int] = []
    with RayEnvPool(actors=2, num_cpus=0.5) as pool:
        def kill_midway(_episode):
            done.append(1)
            if len(done) == 300:  # ~700 episodes still to go, a few hundred of them live on the victim
                ray.kill(pool.actor_handles[0], no_restart=True)

        eps = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=pool, on_episode=kill_midway, concurrency=256)
        deaths = pool.deaths
    assert len(eps) == 1000 and [e.task.id for e in eps] == [e.task.id for e in clean]
    retried = [e for e in eps if e.metadata.get("env_retries")]
    failed = [e for e in eps if e.failure is not None]
    assert deaths == 1 and retried, "the kill must have hit live episodes"
    assert all(e.failure.boundary == "env" and e.failure.kind == "EnvActorDied" for e in failed)  # typed, never a silent 0
    finished = [(a, b) for a, b in zip(eps, clean, strict=True) if a.failure is None]
    assert len(finished) + len(failed) == 1000
    assert all(without_timings(a) == without_timings(b) for a, b in finished)


def test_when_every_actor_is_gone_episodes_fail_typed_instead_of_hanging(ray_local):
    tasks = sample_tasks(UNITCONV, n=40, seed=3)
    with RayEnvPool(actors=1, num_cpus=0.5, max_replacements=0) as pool:
        def kill_first(_episode, fired=[]):  # noqa: B006  (the shared default is the 'fired once' flag)
            if not fired:
                fired.append(1)
                ray.kill(pool.actor_handles[0], no_restart=True)

        eps = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=pool, on_episode=kill_first, concurrency=40, max_batch=1)
    failed = [e for e in eps if e.failure is not None]
    assert failed and all(e.failure.kind == "EnvActorDied" and e.failure.attempts == 2 for e in failed)
    assert len(eps) == 40


class SegfaultEnv(UnitConvEnv):
    """A tool that kills its own process the way a crashing C extension would."""

    @tool
    def crash(self) -> str:
        """Crash the hosting process."""
        os.kill(os.getpid(), signal.SIGSEGV)
        return "unreachable"


def test_a_segfaulting_tool_is_a_typed_env_failure_after_its_retries(ray_local):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    crash = '<tool_call>{"name": "crash", "arguments": {}}</tool_call>'
    with RayEnvPool(actors=1, num_cpus=0.5, max_replacements=3) as pool:
        eps = run_episodes(SegfaultEnv, ScriptedPolicy({}, default=[crash]), n=1, pool=pool, env_retries=1)
        deaths = pool.deaths
    assert deaths >= 1  # the second death is seen when the next episode would need the slot
    (ep,) = eps
    assert ep.failure is not None and ep.failure.boundary == "env" and ep.failure.kind == "EnvActorDied"
    assert ep.failure.attempts == 2 and not ep.scorable
