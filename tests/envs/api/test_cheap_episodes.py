"""Copy-on-write worlds and spliced digests (``toolgym.envs.api.cow``) change costs, not results.

The reference for every digest is ``toolgym.envs.canonical.digest`` of a plain, validated copy
of the same world: what the library computed before copy-on-write existed.
"""

from __future__ import annotations

import copy
import gc
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

import toolgym
from toolgym.envs.api.cow import CowDict
from toolgym.envs.api.domain import StateModel
from toolgym.envs.api.forks import fork_world, world_digest
from toolgym.envs.canonical import digest
from toolgym.envs.types import ToolCall
from toolgym.rollouts.gcpolicy import deferred_gc

DOMAINS = ("toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0")


def plain(world: Any) -> Any:
    """The world as the library held it before: plain dicts, validated."""
    return type(world).model_validate(world.model_dump())


def gold_turns(env: Any, task: Any) -> list[str]:
    calls = [ToolCall(id=f"g{k}", name=a.name, arguments=a.arguments) for k, a in enumerate(task.gold_actions)]
    return [env.format.render_turn("", [c]) for c in calls]


@pytest.mark.parametrize("env_id", DOMAINS)
def test_eval_split_digests_match_the_plain_encoding_through_restores(env_id: str) -> None:
    env = toolgym.make(env_id)
    for task in type(env).eval_tasks()[:25]:
        env.reset(seed=0, options={"task": task})
        start = env.state_digest()
        snap = env.snapshot()
        for _ in range(2):  # the second round reuses the snapshot's cached text
            env.restore(snap)
            assert world_digest(env.world_state()) == start == digest(plain(env.world_state()))
            for turn in gold_turns(env, task):
                env.step(turn)
                assert env.state_digest() == digest(plain(env.world_state()))
            _, reward, *_ = env.step(task.gold_answer or "done")
            assert env.state_digest() == task.expected.state_digest
            assert reward == 1.0


@pytest.mark.parametrize("env_id", DOMAINS)
def test_siblings_fork_diverge_and_restore_independently(env_id: str) -> None:
    cls = type(toolgym.make(env_id))
    task = cls.task_generator(7)
    a, b = cls(), cls()
    a.reset(seed=1, options={"task": task})
    start, snap = a.state_digest(), a.snapshot()
    b.restore(snap)
    turns = gold_turns(a, task)
    for turn in turns:  # a replays the gold calls, b only its first one
        a.step(turn)
    b.step(turns[0])
    after_a, after_b = a.state_digest(), b.state_digest()
    assert digest(plain(a.world_state())) == after_a and digest(plain(b.world_state())) == after_b
    fork = a.snapshot()
    a.restore(snap)
    assert a.state_digest() == start  # the snapshot saw none of a's writes
    assert b.state_digest() == after_b  # nor did b see a's
    c = cls()
    c.restore(fork)
    assert c.state_digest() == after_a
    for turn in turns:  # replaying from the start gives the same world again
        a.step(turn)
    assert a.state_digest() == after_a


# --------------------------------------------------------------------------- generated mutations


class Tag(StateModel):
    """A nested model inside an entity."""

    label: str
    weight: float = 1.0


class Item(StateModel):
    """An entity: scalars, a nested model, a list and a dict inside."""

    name: str
    count: int = 0
    tag: Tag = Field(default_factory=lambda: Tag(label="none"))
    notes: list[str] = Field(default_factory=list)
    meta: dict[str, str] = Field(default_factory=dict)


class Shop(StateModel):
    """A world with two entity dicts and a counter."""

    items: dict[str, Item]
    spare: dict[str, Item] = Field(default_factory=dict)
    next_id: int = 0


text = st.text(max_size=6)
keys = st.sampled_from(["a", "b", "c", "d", "$float", "é"])
OPS = st.one_of(
    st.tuples(st.just("count"), keys, st.integers(-5, 5)),
    st.tuples(st.just("note"), keys, text),
    st.tuples(st.just("meta"), keys, keys),
    st.tuples(st.just("tag"), keys, st.floats(allow_nan=True, allow_infinity=True)),
    st.tuples(st.just("put"), keys, text),
    st.tuples(st.just("pop"), keys, st.none()),
    st.tuples(st.just("scan"), keys, st.integers(0, 3)),
    st.tuples(st.just("merge"), keys, st.integers(0, 3)),
    st.tuples(st.just("counter"), keys, st.integers(0, 9)),
    st.tuples(st.just("fork"), keys, st.none()),
    st.tuples(st.just("pickle"), keys, st.none()),
)


def apply(world: Shop, op: tuple[str, str, Any]) -> Shop:
    """One mutation, by any of the ways tool code reaches entities; returns the world to go on with."""
    kind, key, arg = op
    items = world.items
    if kind == "put":
        items[key] = Item(name=arg)
    elif key not in items:
        return world
    elif kind == "count":
        items[key].count += arg
    elif kind == "note":
        items.get(key).notes.append(arg)  # type: ignore[union-attr]
    elif kind == "meta":
        items[key].meta[arg] = key
    elif kind == "tag":
        items[key].tag.weight = arg
    elif kind == "pop":
        items.pop(key).count += 100  # the popped entity is the caller's now
    elif kind == "scan":  # a search through values(), then a write to what it found
        found = next(v for v in items.values() if v.name == items[key].name)
        found.notes.append(str(arg))
    elif kind == "merge":  # plain copies made from the dict hand out entities too
        merged = [dict(items), {**items}, items.copy(), items | {}][arg]
        merged[key].count += 1
    elif kind == "counter":
        world.next_id += arg
    elif kind == "fork":
        return copy.deepcopy(world)
    elif kind == "pickle":
        return pickle.loads(pickle.dumps(world))
    return world


@settings(max_examples=120, deadline=None)
@given(start=st.dictionaries(keys, text, min_size=1, max_size=4), ops=st.lists(OPS, max_size=12))
def test_generated_mutations_give_the_plain_digest_and_never_reach_the_snapshot(
    start: dict[str, str], ops: list[tuple[str, str, Any]]
) -> None:
    base = Shop(items={k: Item(name=v, meta={"k": v}) for k, v in start.items()})
    snapshot = copy.deepcopy(base)  # what ToolEnv.snapshot keeps
    before = digest(plain(snapshot))
    live, reference = copy.deepcopy(snapshot), plain(snapshot)  # a restore, and the old way
    assert type(live.items) is CowDict
    for op in ops:
        live, reference = apply(live, op), apply(reference, op)
        expected = digest(reference)
        spliced = world_digest(live)
        assert spliced is None or spliced == expected
        assert digest(live) == expected
    assert digest(snapshot) == before == digest(copy.deepcopy(snapshot))
    assert world_digest(copy.deepcopy(snapshot)) in (None, before)


def test_tagged_or_non_finite_worlds_fall_back_to_the_canonical_encoder() -> None:
    world = copy.deepcopy(Shop(items={"a": Item(name="x", meta={"$float": "nan"})}))
    assert world_digest(world) is None  # '{"$' in the text: the encoder must wrap it
    world = copy.deepcopy(Shop(items={"a": Item(name="x", tag=Tag(label="t", weight=float("inf")))}))
    assert world_digest(world) is None
    assert digest(world) == digest(plain(world))


def test_entity_subclasses_are_hashed_as_the_world_serializes_them() -> None:
    class Special(Item):
        extra: str = "hidden"

    world = copy.deepcopy(Shop(items={"a": Item(name="x")}))
    world.items["b"] = Special(name="y")
    assert world_digest(world) is None
    assert isinstance(fork_world(world), Shop)


# --------------------------------------------------------------------------- fewer objects


def test_a_restore_builds_a_small_fraction_of_the_world_s_tracked_objects() -> None:
    env = toolgym.make("toolgym/retail-v0")
    env.reset(seed=3)
    snap = env.snapshot()
    world_objects = _tracked(plain(env.world_state()))
    gc.disable()
    try:
        before = len(gc.get_objects())
        env.restore(snap)
        created = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert created < world_objects / 4, (created, world_objects)


def _tracked(root: Any) -> int:
    seen, stack = set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    return len(seen)


def test_deferred_gc_with_freeze_collects_cycles_then_freezes_survivors() -> None:
    class Node:
        pass

    try:
        with deferred_gc(freeze=True) as stats:
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]
            del a, b
            keep = [Node()]
        assert stats.collected >= 2 and stats.cpu_seconds >= 0
        assert gc.isenabled() and gc.get_freeze_count() > 0
        assert keep
    finally:
        gc.unfreeze()


def test_frozen_batches_find_every_cycle_whether_they_collect_young_objects_only_or_all() -> None:
    class Node:
        pass

    def cycle() -> Node:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        return a

    try:
        with deferred_gc(freeze=True):
            pass
        with deferred_gc(freeze=True) as young:  # nothing collected or unfrozen since: young only
            cycle()
        assert young.collected >= 2
        with deferred_gc(freeze=True):
            kept = [cycle()]  # frozen while still in use
        gc.unfreeze()  # everything old again: the next batch must look at all of it
        kept.clear()
        with deferred_gc(freeze=True) as everything:
            pass
        assert everything.collected >= 2
    finally:
        gc.unfreeze()
        gc.collect()
