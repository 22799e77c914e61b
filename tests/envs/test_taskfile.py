from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs import load_tasks, save_tasks
from toolgym.envs.catalog.unitconv.tasks import generate_tasks
from toolgym.errors import TaskFileError


def test_round_trip(tmp_path):
    tasks = generate_tasks(20, seed=5)
    assert load_tasks(save_tasks(tasks, tmp_path / "t.jsonl")) == tasks


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"id": "b"}), "field 'instruction' is required"),
        (json.dumps({"id": "b", "instruction": "x", "limits": {"max_turns": 0}}), "field 'limits.max_turns'"),
        (json.dumps({"id": "b", "instruction": "x", "gold": []}), "field 'gold' is not a task field"),
        (json.dumps({"id": "a", "instruction": "again"}), "task id 'a' already used on line 1"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, fragment):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "ok"}) + "\n" + line + "\n")
    with pytest.raises(TaskFileError) as err:
        load_tasks(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: ")
    assert fragment in message


def test_missing_file(tmp_path):
    with pytest.raises(TaskFileError, match="no such task file"):
        load_tasks(tmp_path / "nope.jsonl")
    with pytest.raises(TaskFileError, match="is a directory"):
        load_tasks(tmp_path)


def test_non_utf8_line_is_named(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(json.dumps({"id": "a", "instruction": "ok"}).encode() + b'\n{"id": "b", "instruction": "caf\xe9"}\n')
    with pytest.raises(TaskFileError, match=r"tasks\.jsonl:2: not UTF-8 text \(byte 0xe9 at column \d+\)"):
        load_tasks(path)


# ---------------------------------------------------------------- numbers JSON cannot hold, anywhere

KEYS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
LEAVES = st.one_of(st.integers(-10, 10), st.text(max_size=5), st.booleans(), st.none(), st.floats(-1e3, 1e3))
TREES = st.recursive(LEAVES, lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=3)), max_leaves=8)
BAD = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-2.5E+999", "9" * 1001])


def spots(node, path=()):
    """Every place in ``node`` a value can sit, as (path, label the message should show)."""
    yield path
    if isinstance(node, dict):
        for key, child in node.items():
            yield from spots(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from spots(child, (*path, i))


def label(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def put(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@settings(max_examples=60, deadline=None)
@given(metadata=st.dictionaries(KEYS, TREES, max_size=3), state=st.dictionaries(KEYS, TREES, max_size=2), token=BAD, pick=st.integers(0, 10**6), data=st.data())
def test_a_number_json_cannot_hold_names_the_field_and_its_column(tmp_path_factory, metadata, state, token, pick, data):
    task = {"id": "b", "instruction": "do it", "initial_state": state, "metadata": metadata, "gold_answer": "x"}
    places = [p for p in spots(task) if p]  # any field, at any depth (not the whole line)
    where = places[pick % len(places)]
    put(task, where, "__X__")
    line = json.dumps(task, indent=data.draw(st.sampled_from([None, 1])), separators=data.draw(st.sampled_from([None, (",", ":")])))
    line = line.replace("\n", " ")  # one task per line, whatever the spacing
    column = line.index('"__X__"') + 1
    path = tmp_path_factory.mktemp("t") / "tasks.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": "ok"}) + "\n" + line.replace('"__X__"', token) + "\n")
    with pytest.raises(TaskFileError) as err:
        load_tasks(path)
    assert str(err.value).startswith(f"{path}:2: field '{label(where)}' (column {column}): ")


def test_a_refused_number_inside_a_string_is_text_not_a_number(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"id": "a", "instruction": 'say "NaN" and 1e400', "metadata": {"k": "Infinity"}}) + "\n")
    assert load_tasks(path)[0].metadata == {"k": "Infinity"}
