from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.envs.types import AssistantMessage, Task, ToolCall, ToolMessage, UserMessage
from toolgym.errors import ConfigError, TaskFileError
from toolgym.rollouts import ChaosPolicy, load_episodes, run_episodes, save_episodes
from toolgym.rollouts.arrow_codec import dumps
from toolgym.rollouts.episode import Episode, Failure, TurnRecord

# Text that breaks naive storage: line separators splitlines() honours, lone surrogates, NUL.
_NASTY = st.sampled_from(["\u2028", "\u2029", "\x85", "\ud800", "\udfff", "\x00", "\n", "\r\n", "é", "😀"])
TEXT = st.lists(st.text(max_size=6) | _NASTY, max_size=4).map("".join)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def episodes(draw: st.DrawFn) -> Episode:
    call = ToolCall(id=draw(TEXT), name="f", arguments=draw(st.dictionaries(TEXT, JSON, max_size=3)))
    messages = [
        UserMessage(content=draw(TEXT)),
        AssistantMessage(content=draw(TEXT), tool_calls=[call], raw=draw(st.none() | TEXT)),
        ToolMessage(tool_call_id=call.id, name="f", content=draw(TEXT), error=draw(st.sampled_from([None, "timeout"]))),
    ]
    ids = draw(st.lists(st.integers(0, 2**31), max_size=5))
    turn = TurnRecord(
        text=draw(TEXT), token_ids=ids, logprobs=[draw(FLOATS) for _ in ids], errors=draw(st.dictionaries(TEXT, st.integers(0, 9), max_size=2))
    )
    return Episode(
        id=draw(TEXT),
        env_id="toolgym/unitconv-v0",
        task=Task(id=draw(TEXT), instruction=draw(TEXT), initial_state=draw(st.dictionaries(TEXT, JSON, max_size=2)), metadata={"x": draw(JSON)}),
        seed=draw(st.integers(0, 2**100)),
        messages=messages,
        turns=[turn],
        stop_reason=draw(st.sampled_from(["answered", "max_turns", "env_error"])),
        reward=draw(FLOATS),
        failure=draw(st.none() | st.builds(Failure, boundary=st.just("env"), kind=TEXT, message=TEXT)),
        metrics=draw(st.dictionaries(TEXT, FLOATS, max_size=2)),
        metadata=draw(st.dictionaries(TEXT, JSON, max_size=2)),
    )


def _same(a: list[Episode], b: list[Episode]) -> bool:
    """Equality that treats NaN as equal to NaN (the dump spells it ``NaN`` on both sides)."""
    return [dumps(e.model_dump(mode="python")) for e in a] == [dumps(e.model_dump(mode="python")) for e in b]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(eps=st.lists(episodes(), min_size=1, max_size=3))
def test_any_episode_round_trips(tmp_path, suffix, eps):
    path = save_episodes(eps, tmp_path / f"eps{suffix}")
    assert _same(load_episodes(path), eps)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_real_episodes_round_trip(tmp_path, suffix):
    episodes = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=12, group_size=2)
    path = save_episodes(episodes, tmp_path / f"eps{suffix}")
    assert load_episodes(path) == episodes


def test_parquet_has_nested_columns(tmp_path):
    import pyarrow.parquet as pq

    episodes = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=3)
    table = pq.read_table(save_episodes(episodes, tmp_path / "e.parquet"))
    assert {"id", "stop_reason", "reward", "final_state_digest", "messages", "turns", "failure", "task"} <= set(table.column_names)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["messages"][0]["role"] == "system" and isinstance(row["messages"][0]["content"], str)
    assert isinstance(row["task"]["instruction"], str)


def test_parquet_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    eps = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=4)
    eps[0].turns[0].token_ids, eps[0].turns[0].logprobs = [5, 6], [-0.5, float("nan")]
    path = save_episodes(eps, tmp_path / "e.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 4 and ds[0]["turns"][0]["token_ids"] == [5, 6]
    assert math.isnan(ds[0]["turns"][0]["logprobs"][1])
    assert [m["role"] for m in ds[0]["messages"]][:2] == ["system", "user"]


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=".jsonl or .parquet"):
        save_episodes([], tmp_path / "e.csv")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(TaskFileError, match="bad.jsonl:1: not an episode record"):
        load_episodes(bad)
    bad.write_text('{"id": "x", "env_id": "e", "ta\n')  # a file cut off mid-record
    with pytest.raises(TaskFileError, match=r"bad.jsonl:1: not an episode record \(Invalid JSON"):
        load_episodes(bad)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(TaskFileError, match="not a Parquet episode file"):
        load_episodes(bad)


def test_episode_files_doc_shows_the_current_columns():
    from pathlib import Path

    from toolgym.rollouts.arrow_codec import schema_text

    doc = (Path(__file__).parents[2] / "docs" / "episode_files.md").read_text()
    assert schema_text() in doc, "update the block in docs/episode_files.md: python -m toolgym.rollouts.arrow_codec"
