"""Wrapping an unmodified class: its methods become tools, its attributes the state."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from toolgym.envs.api import ApiEnv, from_class
from toolgym.envs.checker import check_env
from toolgym.envs.digest import digest
from toolgym.envs.types import Expected, GoldAction, Task, ToolCall
from toolgym.errors import ConfigError, ToolDefinitionError


@dataclasses.dataclass
class Stats:
    books: int
    lent: int


class Library:
    """A small lending library, written with no knowledge of toolgym."""

    def __init__(self):
        self.books: dict[str, str] = {"b1": "Dune", "b2": "Emma"}
        self.loans: dict[str, str] = {}
        self._log: list[str] = []  # private: not part of the state

    def lend(self, book_id: str, member: str) -> str:
        """Lend a book to a member.

        Args:
            book_id: The book.
            member: Who borrows it.
        """
        if book_id not in self.books:
            raise KeyError(f"no book {book_id}")
        if book_id in self.loans:
            raise ValueError(f"{book_id} is already lent to {self.loans[book_id]}")
        self.loans[book_id] = member
        self._log.append(book_id)
        return f"lent {book_id}"

    def available(self) -> set[str]:
        """Books on the shelf."""
        return set(self.books) - set(self.loans)

    def stats(self) -> Stats:
        """How many books there are and how many are lent."""
        return Stats(books=len(self.books), lent=len(self.loans))

    async def ping(self, text: str = "pong") -> str:
        """Answer with the text.

        Args:
            text: What to answer.
        """
        return text


LIBRARY_METHODS = dict(vars(Library))


def step_call(env, name, **arguments):
    obs, *_ = env.step(env.format.render_turn("", [ToolCall(id="c", name=name, arguments=arguments)]))
    return obs.messages[0]


@pytest.fixture
def env():
    return from_class(Library)(tasks=[Task(id="lib", instruction="Lend Dune to Ann.")])


def test_methods_become_tools_and_the_class_is_untouched(env):
    obs, _ = env.reset(seed=0)
    assert sorted(t.name for t in obs.tools) == ["available", "lend", "ping", "stats"]
    lend = next(t for t in obs.tools if t.name == "lend")
    assert lend.function.description == "Lend a book to a member."
    assert lend.function.parameters["properties"]["member"]["description"] == "Who borrows it."
    assert dict(vars(Library)) == LIBRARY_METHODS
    assert isinstance(env.api, Library) and type(env.api) is Library


def test_instance_attributes_are_the_state(env):
    env.reset(seed=0)
    assert env.state_digest() == digest({"books": {"b1": "Dune", "b2": "Emma"}, "loans": {}})
    assert step_call(env, "lend", book_id="b1", member="ann").content == "lent b1"
    assert env.state_digest() == digest({"books": {"b1": "Dune", "b2": "Emma"}, "loans": {"b1": "ann"}})
    assert json.loads(step_call(env, "available").content) == ["b2"]
    assert json.loads(step_call(env, "stats").content) == {"books": 2, "lent": 1}
    assert step_call(env, "ping", text="hi").content == "hi"
    again = step_call(env, "lend", book_id="b1", member="bob")
    assert again.error == "tool_exception" and "already lent to ann" in again.content


def test_initial_state_sets_attributes_and_gold_replay_reaches_the_digest():
    final = {"books": {"x": "Ulysses"}, "loans": {"x": "cy"}}
    task = Task(
        id="t1", instruction="Lend Ulysses to cy.", initial_state={"books": {"x": "Ulysses"}, "loans": {}},
        gold_actions=[GoldAction(name="lend", arguments={"book_id": "x", "member": "cy"})],
        expected=Expected(state_digest=digest(final)),
    )  # fmt: skip
    env = ApiEnv.from_class(Library, state_attrs=["books", "loans"])()
    env.reset(options={"task": task})
    step_call(env, "lend", book_id="x", member="cy")
    _, reward, terminated, _, info = env.step("Done.")
    assert terminated and reward == 1.0 and info["state_digest"] == task.expected.state_digest
    with pytest.raises(ConfigError, match="'lones' is not a state attribute of Library. Did you mean 'loans'"):
        env.reset(options={"task": Task(id="bad", instruction="x", initial_state={"lones": {}})})


def test_sixteen_siblings_fork_instance_attribute_state(env):
    env.reset(seed=0)
    step_call(env, "lend", book_id="b1", member="ann")
    snap = env.snapshot()
    action = env.format.render_turn("", [ToolCall(id="c", name="lend", arguments={"book_id": "b2", "member": "bo"})])
    seen = set()
    for _ in range(16):
        sibling = from_class(Library)(tasks=env.tasks)
        sibling.restore(snap)
        obs = sibling.step(action)[0]
        seen.add((obs.model_dump_json(), sibling.state_digest()))
        assert sibling.api is not env.api and sibling.api.loans is not env.api.loans
    assert len(seen) == 1
    assert env.api.loans == {"b1": "ann"}  # the parent did not move


def test_restore_drops_attributes_created_after_the_snapshot(env):
    env.reset(seed=0)
    snap = env.snapshot()
    before = env.state_digest()
    env.api.fines = {"ann": 2}
    assert env.state_digest() != before
    env.restore(snap)
    assert not hasattr(env.api, "fines") and env.state_digest() == before


def test_declared_state_attrs_limit_the_digest():
    env = from_class(Library, state_attrs=["loans"])(tasks=[Task(id="t", instruction="x")])
    env.reset(seed=0)
    assert env.state_digest() == digest({"loans": {}})
    env.api.books["b3"] = "Beloved"  # not state: the digest does not see it
    assert env.state_digest() == digest({"loans": {}})


def test_untyped_method_names_method_and_parameter():
    class Bad:
        def add(self, a: int, b) -> int:
            """Add.

            Args:
                a: One.
                b: Two.
            """
            return a + b

    with pytest.raises(ToolDefinitionError, match=r"Bad.add: parameter 'b' has no type hint.*methods=\[\.\.\.\]"):
        from_class(Bad)
    with pytest.raises(ConfigError, match="no public method 'lendx'. Did you mean 'lend'"):
        from_class(Library, methods=["lendx"])
    assert [
        t.name
        for t in from_class(Library, methods=["lend"])(tasks=[Task(id="t", instruction="x")]).reset(seed=0)[0].tools
    ] == ["lend"]


def test_constructor_arguments_need_a_factory():
    class Shelf:
        def __init__(self, size: int):
            self.size = size
            self.items: list[str] = []

        def put(self, item: str) -> int:
            """Put an item on the shelf.

            Args:
                item: The item.
            """
            if len(self.items) >= self.size:
                raise ValueError("the shelf is full")
            self.items.append(item)
            return len(self.items)

    task = Task(id="s", instruction="x", initial_state={"size": 1})
    with pytest.raises(ConfigError, match=r"cannot build Shelf\(\) without arguments.*factory="):
        from_class(Shelf)().reset(options={"task": task})
    env = from_class(Shelf, factory=lambda state: Shelf(**copy.deepcopy(state)))()
    env.reset(options={"task": task})
    assert step_call(env, "put", item="jar").content == "1"
    assert "the shelf is full" in step_call(env, "put", item="pot").content


def test_wrapped_env_passes_check_env(env):
    check_env(env, seed=1)
