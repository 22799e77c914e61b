"""``check_env`` steps real calls: it catches nondeterministic tools, misspelled gold tools,
wrong expected digests and specs that break the JSON Schema metaschema."""

from __future__ import annotations

import random

import pytest

import toolgym
from toolgym.envs import check_env
from toolgym.envs.checker import EnvCheckError
from toolgym.envs.env import ToolEnv
from toolgym.envs.tools import tool
from toolgym.envs.types import Expected, GoldAction, Task


class Counter(ToolEnv):
    """A counter whose tools are deterministic."""

    def setup(self, task: Task) -> None:
        self.world = {"n": 0, "log": []}

    @tool
    def bump(self, by: int) -> int:
        """Add to the counter.

        Args:
            by: Amount to add.
        """
        self.world["n"] += by
        return self.world["n"]


class Noisy(Counter):
    """Writes process-global randomness into the world: not reproducible from the seed."""

    @tool
    def note(self, text: str) -> str:
        """Keep a note with a random id.

        Args:
            text: The note.
        """
        self.world["log"].append([text, random.random()])
        return "ok"


def digest_after(env_cls: type[ToolEnv], gold: list[GoldAction]) -> str:
    env = env_cls(tasks=[Task(id="t", instruction="go")])
    env.reset(seed=0)
    for a in gold:
        env.step(env.format.render_turn("", [toolgym.envs.ToolCall(id="c", name=a.name, arguments=a.arguments)]))
    return env.state_digest()


GOLD = [GoldAction(name="bump", arguments={"by": 2}), GoldAction(name="bump", arguments={"by": 3})]


def test_a_deterministic_env_with_correct_gold_passes():
    task = Task(id="t", instruction="go", gold_actions=GOLD, expected=Expected(state_digest=digest_after(Counter, GOLD)))
    check_env(Counter(tasks=[task]))


def test_a_tool_that_writes_global_randomness_fails_without_gold():
    with pytest.raises(EnvCheckError, match="nondeterministic.*'note'"):
        check_env(Noisy(tasks=[Task(id="t", instruction="go")]))


def test_a_misspelled_gold_tool_fails():
    task = Task(id="t", instruction="go", gold_actions=[GoldAction(name="bumq", arguments={"by": 1})])
    with pytest.raises(EnvCheckError, match="gold action 1 .'bumq'. failed with unknown_tool.*Did you mean 'bump'"):
        check_env(Counter(tasks=[task]))


def test_gold_with_arguments_that_do_not_fit_fails():
    task = Task(id="t", instruction="go", gold_actions=[GoldAction(name="bump", arguments={"by": "lots"})])
    with pytest.raises(EnvCheckError, match="invalid_arguments"):
        check_env(Counter(tasks=[task]))


def test_a_wrong_expected_digest_fails():
    task = Task(id="t", instruction="go", gold_actions=GOLD, expected=Expected(state_digest="0" * 32))
    with pytest.raises(EnvCheckError, match="expected.state_digest is 0{32}"):
        check_env(Counter(tasks=[task]))


def test_a_spec_that_breaks_the_metaschema_fails():
    env = Counter(tasks=[Task(id="t", instruction="go")])
    env.reset(seed=0)
    spec = env.toolbox.specs()[0].model_copy(deep=True)
    spec.function.parameters["properties"]["by"]["minimum"] = "zero"  # not a number
    from toolgym.envs.checker import _check_schema

    with pytest.raises(EnvCheckError, match="invalid JSON Schema"):
        _check_schema(spec)
