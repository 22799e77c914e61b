"""``ForkingPool``: siblings start from one reset, and episodes equal those of independent resets."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from toolgym.rollouts import ScriptedPolicy, sample_tasks
from toolgym.rollouts.loop import arun_episodes
from toolgym.rollouts.pool import LocalEnvPool
from toolgym.trainers.system.fork import ForkingPool

EXCLUDE = frozenset({"metadata"})


def _run(env_id: str, pool, tasks, k: int):
    return asyncio.run(arun_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks, group_size=k, seed=3, pool=pool))


@pytest.mark.parametrize("env_id", ["toolgym/unitconv-v0", "toolgym/shell-v0"])
def test_siblings_fork_from_one_reset_and_match_independent_resets(env_id):
    if env_id == "toolgym/shell-v0" and shutil.which("bwrap") is None:
        pytest.skip("shell envs need bubblewrap")
    tasks = sample_tasks(env_id, n=2, seed=3)
    k = 3
    forking = ForkingPool(LocalEnvPool())
    forked = _run(env_id, forking, tasks, k)
    plain = _run(env_id, LocalEnvPool(), tasks, k)
    assert forking.resets == len(tasks) and forking.forks == len(tasks) * (k - 1)
    assert [e.without_timings(EXCLUDE) for e in forked] == [e.without_timings(EXCLUDE) for e in plain]
    for g in range(len(tasks)):
        group = forked[g * k : (g + 1) * k]
        assert len({e.group for e in group}) == 1
        assert len({e.messages[0].content for e in group}) == 1  # one start, shared
    asyncio.run(forking.aclose())


def test_a_failed_first_reset_is_redone_by_a_sibling():
    class FlakyPool(LocalEnvPool):
        failed = False

        async def reset(self, env, *, seed=None, options=None):
            if not self.failed:
                self.failed = True
                raise RuntimeError("env died during reset")
            return await super().reset(env, seed=seed, options=options)

    tasks = sample_tasks("toolgym/unitconv-v0", n=1, seed=0)
    pool = ForkingPool(FlakyPool())
    episodes = _run("toolgym/unitconv-v0", pool, tasks, 2)
    assert all(e.scorable for e in episodes)  # the loop retried; nobody was scored from a broken start
    assert sum(e.metadata.get("env_retries", 0) for e in episodes) >= 1
    assert pool.resets == 1
