"""The write barrier (``toolgym.envs.api.cow``): reads share entities, writes never leak.

After a restore, a world shares its entities with the snapshot and with every sibling
restored from it; read-only tools (and ``reading()`` blocks) are handed those shared
entities. Whatever tool calls a model makes, with whatever arguments, nothing it changes
may reach the snapshot or a sibling, and every observation and digest must be what an env
that never shared anything (a fresh reset of the same task) gives.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs.api.barrier import ReadOnlyWrite, reading
from toolgym.envs.api.domain import StateModel
from toolgym.envs.canonical import digest
from toolgym.envs.types import ToolCall

DOMAINS = ("toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0")
_CLASSES = {env_id: type(toolgym.make(env_id)) for env_id in DOMAINS}


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.add(str(k))
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _values(schema: dict[str, Any], pool: list[str]) -> st.SearchStrategy[Any]:
    """Arguments of one JSON-schema type, drawn from the world's own strings (ids, emails...)."""
    if "anyOf" in schema:
        return st.one_of(*(_values(s, pool) for s in schema["anyOf"]))
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.sampled_from([-5, 0, 1, 3, 10, 500, 10**6])
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_values(schema.get("items", {}), pool), max_size=3)
    return st.sampled_from(pool)


@st.composite
def episodes(draw: st.DrawFn, env_id: str) -> tuple[Any, list[str]]:
    """A task of ``env_id``, a prefix of its gold calls, then gold and generated calls in any order."""
    cls = _CLASSES[env_id]
    task = cls.task_generator(draw(st.integers(0, 10_000)))
    env = cls()
    env.reset(seed=0, options={"task": task})
    found: set[str] = set()
    _strings(task.initial_state, found)
    for action in task.gold_actions:
        _strings(action.arguments, found)
    pool = sorted(found)[:200]
    specs = {t.name: t.function.parameters for t in env.toolbox.specs()}
    gold = [ToolCall(id="g", name=a.name, arguments=a.arguments) for a in task.gold_actions]

    @st.composite
    def generated(draw2: st.DrawFn) -> ToolCall:
        name = draw2(st.sampled_from(sorted(specs)))
        props = specs[name].get("properties", {})
        args = {p: draw2(_values(s, pool)) for p, s in props.items() if p in specs[name].get("required", []) or draw2(st.booleans())}
        return ToolCall(id="x", name=name, arguments=args)

    prefix = gold[: draw(st.integers(0, len(gold)))]  # writes need the gold's authentication first
    calls = prefix + draw(st.lists(st.one_of(st.sampled_from(gold), generated()), min_size=1, max_size=6))
    return task, [env.format.render_turn("", [c]) for c in calls]


def _observed(env: Any, turns: list[str]) -> list[tuple[Any, ...]]:
    seen = []
    for turn in turns:
        obs, reward, terminated, truncated, _ = env.step(turn)
        seen.append((tuple(m.model_dump_json() for m in obs.messages), reward, terminated, truncated, env.state_digest()))
    return seen


@pytest.mark.parametrize("env_id", DOMAINS)
def test_any_tool_calls_after_a_restore_never_reach_the_snapshot_or_a_sibling(env_id: str) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(episode=episodes(env_id))
    def run(episode: tuple[Any, list[str]]) -> None:
        task, turns = episode
        cls = _CLASSES[env_id]
        origin = cls()
        origin.reset(seed=0, options={"task": task})
        start, snap = origin.state_digest(), origin.snapshot()
        live, sibling, fresh = cls(), cls(), cls()
        live.restore(snap)
        sibling.restore(snap)
        fresh.reset(seed=0, options={"task": task})  # shares nothing with anyone
        sibling_seen = _observed(sibling, turns[:1])
        assert _observed(live, turns) == _observed(fresh, turns)  # same messages, rewards, digests
        world = live.world_state()
        assert live.state_digest() == digest(type(world).model_validate(world.model_dump()))  # spliced == plain
        assert sibling.state_digest() == sibling_seen[-1][-1]  # the sibling saw none of live's writes
        late = cls()
        late.restore(snap)
        assert late.state_digest() == start  # nor did the snapshot
        assert _observed(late, turns[:1]) == sibling_seen  # and it still replays as before

    run()


def test_a_read_only_tool_that_assigns_state_is_stopped_and_changes_nothing() -> None:
    env = toolgym.make("toolgym/retail-v0")
    env.reset(seed=4)
    snap = env.snapshot()
    env.restore(snap)
    world = env.world_state()
    key = next(iter(world.users))
    before = env.state_digest()
    with pytest.raises(ReadOnlyWrite, match="read_only=True"):
        with reading():
            shared = world.users[key]
            assert shared is snap.world.users._frozen[key]  # handed out, not copied
            shared.email = "changed@example.com"
    assert env.state_digest() == before
    env.restore(snap)
    assert env.state_digest() == before


def test_shared_entity_dicts_fork_on_first_access_and_stay_plain_fields_to_pydantic() -> None:
    class Box(StateModel):
        v: int = 0

    class Shelf(StateModel):
        boxes: dict[str, Box] = {}

    snapshot = copy.deepcopy(Shelf(boxes={"a": Box(v=1)}))
    one, two = copy.deepcopy(snapshot), copy.deepcopy(snapshot)
    assert one.__dict__["boxes"] is two.__dict__["boxes"]  # a restore copies no table
    one.boxes["a"].v = 5
    assert one.boxes is not two.boxes and two.boxes["a"].v == 1 == snapshot.boxes["a"].v
    one.boxes = {"b": Box(v=2)}
    assert one.boxes == {"b": Box(v=2)} and "boxes" in one.model_fields_set
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a subclass may declare the field again, as pydantic allows

        class Tall(Shelf):
            boxes: dict[str, Box] = {}
            height: int = 2

    assert copy.deepcopy(copy.deepcopy(Tall(boxes={"c": Box()}))).boxes["c"] == Box()
