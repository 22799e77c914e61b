from __future__ import annotations

import pytest

import toolgym
from toolgym.envs import check_env, registered
from toolgym.envs.checker import EnvCheckError
from toolgym.envs.env import ToolEnv
from toolgym.envs.types import Task
from toolgym.errors import ConfigError, UnknownEnvError


@pytest.mark.parametrize("env_id", sorted(registered()))
def test_check_env_passes_on_every_registered_env(env_id):
    check_env(toolgym.make(env_id))


@pytest.mark.parametrize("fmt", ["hermes", "openai", "kimi_k2"])
def test_check_env_in_every_format(fmt):
    check_env(toolgym.make("toolgym/unitconv-v0", tool_format=fmt))


def test_unknown_id_suggests_the_closest():
    with pytest.raises(UnknownEnvError, match="Did you mean 'toolgym/unitconv-v0'"):
        toolgym.make("toolgym/unitconv-v1")


def test_register_validates_ids():
    with pytest.raises(ConfigError, match="namespace/name-v0"):
        toolgym.register("no version", "x:Y")
    with pytest.raises(ConfigError, match="package.module:ClassName"):
        toolgym.register("me/thing-v0", "toolgym.envs")


class Leaky(ToolEnv):
    """Breaks determinism on purpose: the checker must notice."""

    calls = 0

    def setup(self, task: Task) -> None:
        Leaky.calls += 1
        self.world = {"n": Leaky.calls}


def test_checker_catches_nondeterminism():
    env = Leaky(tasks=[Task(id="t", instruction="x")])
    with pytest.raises(EnvCheckError, match="different observations or state digests"):
        check_env(env)


def test_user_registered_env_builds_through_gymnasium_too():
    import gymnasium

    from toolgym.envs.registry import unregister

    toolgym.register("tests/leaky-v0", Leaky, tasks=[Task(id="t", instruction="x")])
    try:
        assert isinstance(gymnasium.make("tests/leaky-v0").unwrapped, Leaky)
    finally:
        unregister("tests/leaky-v0")
    assert "tests/leaky-v0" not in toolgym.envs.registered() and "tests/leaky-v0" not in gymnasium.registry
