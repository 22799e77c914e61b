from __future__ import annotations

import pytest

from toolgym.errors import ConfigError, TaskFileError
from toolgym.rollouts import ChaosPolicy, load_episodes, run_episodes, save_episodes


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_episodes_round_trip(tmp_path, suffix):
    episodes = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=12, group_size=2)
    path = save_episodes(episodes, tmp_path / f"eps{suffix}")
    assert load_episodes(path) == episodes


def test_parquet_has_query_columns(tmp_path):
    import pyarrow.parquet as pq

    episodes = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=3)
    table = pq.read_table(save_episodes(episodes, tmp_path / "e.parquet"))
    assert {"id", "stop_reason", "reward", "final_state_digest", "record"} <= set(table.column_names)


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
