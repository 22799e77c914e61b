"""ApiEnv with a native Domain: typed state, snapshots, digests, task generation, eval splits."""

from __future__ import annotations

import copy

import pytest

from toolgym.envs.api import ApiEnv, Domain, NotFound, PolicyViolation, StateModel
from toolgym.envs.api.splits import build_split, split_lines, write_eval_split
from toolgym.envs.digest import digest
from toolgym.envs.taskfile import load_tasks
from toolgym.envs.tools import tool
from toolgym.envs.types import Expected, GoldAction, Task, ToolCall
from toolgym.errors import ConfigError


class Item(StateModel):
    sku: str
    count: int


class Stock(StateModel):
    items: dict[str, Item]
    locked: bool = False


class StockApi(Domain[Stock]):
    state_model = Stock

    @tool
    def count(self, sku: str) -> int:
        """How many units of an item are in stock.

        Args:
            sku: The item.
        """
        if sku not in self.state.items:
            raise NotFound(f"no item {sku!r}")
        return self.state.items[sku].count

    @tool
    def take(self, sku: str, n: int) -> int:
        """Take units out of stock.

        Args:
            sku: The item.
            n: How many.
        """
        if self.state.locked:
            raise PolicyViolation("the stock is locked")
        item = self.state.items[sku]
        if n > item.count:
            raise ValueError(f"only {item.count} left")
        item.count -= n
        return item.count


def stock_task(seed: int, split: str = "train") -> Task:
    n = seed % 5 + 1
    start = Stock(items={"a": Item(sku="a", count=10)})
    final = copy.deepcopy(start)
    final.items["a"].count -= n
    return Task(
        id=f"stock-{split}-{seed}", instruction=f"Take {n} of a.", initial_state=start.model_dump(),
        gold_actions=[GoldAction(name="take", arguments={"sku": "a", "n": n})], expected=Expected(state_digest=digest(final)),
    )  # fmt: skip


class StockEnv(ApiEnv):
    domain = StockApi
    task_generator = staticmethod(stock_task)


def step_call(env, name, **arguments):
    obs, *_ = env.step(env.format.render_turn("", [ToolCall(id="c", name=name, arguments=arguments)]))
    return obs.messages[0]


def test_reset_builds_the_typed_state_from_the_task():
    env = StockEnv()
    env.reset(seed=4)
    assert isinstance(env.api.state, Stock) and env.world is env.api
    assert env.state_digest() == digest(Stock(items={"a": Item(sku="a", count=10)})) == digest(env.task.initial_state)
    assert step_call(env, "take", sku="a", n=env.task.gold_actions[0].arguments["n"]).error is None
    _, reward, terminated, _, _ = env.step("done")
    assert terminated and reward == 1.0


def test_domain_errors_become_observations():
    env = StockEnv()
    env.reset(seed=0)
    assert "NotFound: no item 'zz'" in step_call(env, "count", sku="zz").content
    assert "ValueError: only 10 left" in step_call(env, "take", sku="a", n=11).content
    env.api.state.locked = True
    refusal = step_call(env, "take", sku="a", n=1)
    assert refusal.error == "policy_violation" and refusal.content == "Error (policy_violation): the stock is locked"


def test_state_model_deepcopy_is_an_independent_equal_copy():
    stock = Stock(items={"a": Item(sku="a", count=3)})
    twin = copy.deepcopy(stock)
    assert twin == stock and digest(twin) == digest(stock)
    twin.items["a"].count = 0
    assert stock.items["a"].count == 3


def test_snapshot_restore_round_trip():
    env = StockEnv()
    env.reset(seed=0)
    snap = env.snapshot()
    step_call(env, "take", sku="a", n=2)
    assert env.api.state.items["a"].count == 8
    env.restore(snap)
    assert env.api.state.items["a"].count == 10
    step_call(env, "take", sku="a", n=1)
    assert snap.world.items["a"].count == 10  # the snapshot never aliases the live state


def test_configuration_errors_name_the_fix():
    with pytest.raises(ConfigError, match="must set domain"):
        ApiEnv(tasks=[Task(id="t", instruction="x")]).reset(seed=0)
    with pytest.raises(ConfigError, match="initial_state does not fit Stock: items.a.count"):
        StockEnv().reset(
            options={
                "task": Task(id="t", instruction="x", initial_state={"items": {"a": {"sku": "a", "count": "many"}}})
            }
        )
    with pytest.raises(ConfigError, match="ships no eval split"):
        StockEnv.eval_tasks()


def test_given_tasks_win_over_the_generator():
    env = StockEnv(tasks=[stock_task(2, "given")])
    env.reset(seed=123)
    assert env.task.id == "stock-given-2"
    env = StockEnv()
    env.reset(seed=123)
    assert env.task.id.startswith("stock-train-")


def test_eval_split_files_round_trip(tmp_path):
    class Shipped(StockEnv):
        eval_split = tmp_path / "eval.jsonl"

    path = write_eval_split(Shipped)
    assert path.read_text().splitlines() == split_lines(build_split(stock_task))
    assert Shipped.eval_tasks() == load_tasks(path) == build_split(stock_task)
    assert {t.id for t in Shipped.eval_tasks()} == {f"stock-eval-{i}" for i in range(100)}
