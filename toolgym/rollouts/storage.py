"""Saving and loading episodes: JSONL (one episode per line) and Parquet (columns + full record).

The Parquet file has flat columns for querying (ids, stop reason, reward, digests, turn counts)
and a ``record`` column with the full episode JSON, so loading back is lossless.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from toolgym.errors import ConfigError, TaskFileError
from toolgym.rollouts.episode import Episode

SUFFIXES = (".jsonl", ".parquet")


def _kind(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"{path}: episodes are saved as .jsonl or .parquet, not {path.suffix or 'no suffix'!r}")
    return path.suffix


def save_episodes(episodes: Iterable[Episode], path: str | Path) -> Path:
    """Write episodes to ``path`` (format from the suffix); returns the path."""
    path = Path(path)
    kind = _kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for ep in episodes:
                fh.write(ep.model_dump_json() + "\n")
        return path
    pa, pq = _pyarrow()
    eps = list(episodes)
    table = pa.table(
        {
            "id": [e.id for e in eps],
            "env_id": [e.env_id for e in eps],
            "task_id": [e.task.id for e in eps],
            "seed": pa.array([e.seed for e in eps], pa.int64()),
            "stop_reason": [e.stop_reason.value for e in eps],
            "reward": pa.array([e.reward for e in eps], pa.float64()),
            "num_turns": pa.array([len(e.turns) for e in eps], pa.int32()),
            "final_state_digest": [e.final_state_digest for e in eps],
            "expected_state_digest": [e.task.expected.state_digest for e in eps],
            "group": [e.group for e in eps],
            "record": [e.model_dump_json() for e in eps],
        }
    )
    pq.write_table(table, path)
    return path


def load_episodes(path: str | Path) -> list[Episode]:
    """Read episodes written by ``save_episodes``; bad lines are reported with their number."""
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such episode file")
    if kind == ".parquet":
        _, pq = _pyarrow()
        records = pq.read_table(path, columns=["record"]).column("record").to_pylist()
    else:
        records = path.read_text(encoding="utf-8").splitlines()
    episodes = []
    for lineno, line in enumerate(records, start=1):
        if not line.strip():
            continue
        try:
            episodes.append(Episode.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"field '{where}': {first['msg']}" if where else first["msg"]  # no field: the line is not JSON
            raise TaskFileError(f"{path}:{lineno}: not an episode record ({detail})") from None
    return episodes


def _pyarrow():  # type: ignore[no-untyped-def]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("Parquet needs pyarrow: pip install 'toolgym[parquet]'") from exc
    return pa, pq
