"""Wrapped classes that hold object trees, cursors into them, RNGs and mixed-key dicts.

The promise: the digest works, and fork / diverge / restore / replay gives identical call
outputs, call by call (a restore that missed the private cursor or the RNG would not).
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.api import ApiEnv
from toolgym.envs.formats import ParsedTurn
from toolgym.envs.types import Task, ToolCall


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"


class Node:
    """A directory-tree node with a parent pointer (a cycle) and children."""

    def __init__(self, name: str, kind: Kind, parent: Node | None = None):
        self.name, self.kind, self.parent = name, kind, parent
        self.children: dict[str, Node] = {}
        self.size = decimal.Decimal("0")


@dataclasses.dataclass
class Stamp:
    tag: str
    at: tuple[int, int]


class Slotted:
    __slots__ = ("count", "tags")

    def __init__(self) -> None:
        self.count = 0
        self.tags: set[str] = set()


class FileSystem:
    """A file system with a current directory (a private cursor) and random ids (a private RNG)."""

    def __init__(self) -> None:
        self.root = Node("/", Kind.DIR)
        self._cwd = self.root
        self._rng = random.Random(7)
        self.index: dict[object, str] = {0: "zero", "order_type": "fifo"}  # mixed-type keys
        self.stamps: list[Stamp] = []
        self.counter = Slotted()

    def mkdir(self, name: str) -> str:
        """Create a directory in the current one and return its id.

        Args:
            name: Directory name.
        """
        node = Node(name, Kind.DIR, self._cwd)
        self._cwd.children[name] = node
        ident = f"d{self._rng.randrange(10**6)}"
        self.index[len(self.index)] = ident
        self.counter.count += 1
        self.counter.tags.add(name)
        return ident

    def cd(self, name: str) -> str:
        """Change the current directory ('..' goes up).

        Args:
            name: A child directory, or '..'.
        """
        if name == "..":
            self._cwd = self._cwd.parent or self._cwd
        elif name in self._cwd.children:
            self._cwd = self._cwd.children[name]
        else:
            raise KeyError(f"no directory {name!r} in {self._cwd.name}")
        return self._cwd.name

    def touch(self, name: str, size: int) -> str:
        """Create a file in the current directory.

        Args:
            name: File name.
            size: Size in bytes.
        """
        node = Node(name, Kind.FILE, self._cwd)
        node.size = decimal.Decimal(size) / 10
        self._cwd.children[name] = node
        self.stamps.append(Stamp(tag=name, at=(len(self.stamps), self._rng.randrange(100))))
        return f"{self._cwd.name}/{name}"

    def ls(self) -> list[str]:
        """List the current directory."""
        return sorted(self._cwd.children)


FsEnv = ApiEnv.from_class(FileSystem)
TASK = Task(id="fs", instruction="organise the files")
NAMES = st.sampled_from(["a", "b", "c", ".."])
CALLS = st.one_of(
    st.builds(lambda n: ("mkdir", {"name": n}), st.sampled_from(["a", "b", "c"])),
    st.builds(lambda n: ("cd", {"name": n}), NAMES),
    st.builds(lambda n, s: ("touch", {"name": n, "size": s}), st.sampled_from(["x", "y"]), st.integers(0, 10**6)),
    st.just(("ls", {})),
)


def play(env: FsEnv, calls: list[tuple[str, dict]]) -> list[str]:  # type: ignore[valid-type]
    out = []
    for i, (name, args) in enumerate(calls):
        obs = env.step(ParsedTurn(tool_calls=[ToolCall(id=f"c{i}", name=name, arguments=args)]))[0]
        out.append(obs.messages[0].content)
    return out


def fresh() -> FsEnv:  # type: ignore[valid-type]
    env = FsEnv()
    env.reset(seed=0, options={"task": TASK.model_copy(update={"limits": TASK.limits.model_copy(update={"max_turns": 200, "max_tool_calls": 400})})})
    return env


@settings(max_examples=25, deadline=None)
@given(prefix=st.lists(CALLS, max_size=8), branch_a=st.lists(CALLS, max_size=8), branch_b=st.lists(CALLS, min_size=1, max_size=8))
def test_fork_diverge_restore_replay_gives_identical_outputs(prefix, branch_a, branch_b):
    env = fresh()
    play(env, prefix)
    snap, digest = env.snapshot(), env.state_digest()
    first = play(env, branch_a + branch_b)
    env.restore(snap)
    assert env.state_digest() == digest
    play(env, branch_b)  # diverge
    env.restore(snap)
    assert env.state_digest() == digest
    assert play(env, branch_a + branch_b) == first  # replay: call by call
    sibling = fresh()
    sibling.restore(snap)  # a sibling env forked from the same snapshot
    assert play(sibling, branch_a + branch_b) == first


def test_digest_covers_trees_cycles_mixed_keys_dataclasses_slots_and_decimals():
    env = fresh()
    before = env.state_digest()
    play(env, [("mkdir", {"name": "a"}), ("cd", {"name": "a"}), ("touch", {"name": "x", "size": 5})])
    after = env.state_digest()
    assert len(after) == 32 and after != before
    again = fresh()
    play(again, [("mkdir", {"name": "a"}), ("cd", {"name": "a"}), ("touch", {"name": "x", "size": 5})])
    assert again.state_digest() == after


def test_restore_rewires_the_cursor_into_the_restored_tree():
    env = fresh()
    play(env, [("mkdir", {"name": "a"}), ("cd", {"name": "a"})])
    snap = env.snapshot()
    play(env, [("cd", {"name": ".."}), ("mkdir", {"name": "b"})])
    env.restore(snap)
    api = env.api
    assert api._cwd.name == "a" and api._cwd.parent is api.root  # not an orphaned copy
    assert play(env, [("touch", {"name": "x", "size": 1})]) == ["a/x"]
    assert "x" in api.root.children["a"].children


def test_state_fn_replaces_the_generic_encoding():
    env_cls = ApiEnv.from_class(FileSystem, state_fn=lambda fs: sorted(fs.root.children))
    env = env_cls()
    env.reset(seed=0, options={"task": TASK})
    empty = env.state_digest()
    play(env, [("cd", {"name": ".."})])
    assert env.state_digest() == empty  # the cursor is not in the declared state
    play(env, [("mkdir", {"name": "a"})])
    assert env.state_digest() != empty


def test_state_attrs_choose_what_is_hashed_but_snapshots_keep_everything():
    env_cls = ApiEnv.from_class(FileSystem, state_attrs=["root"])
    env = env_cls()
    env.reset(seed=0, options={"task": TASK})
    snap = env.snapshot()
    draws = play(env, [("mkdir", {"name": "a"})])
    env.restore(snap)
    assert play(env, [("mkdir", {"name": "a"})]) == draws  # the RNG (not hashed) was restored too
