from __future__ import annotations

import json

import pytest

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
