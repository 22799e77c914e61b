"""Saving and loading episodes: JSONL (one episode per line) and Parquet (nested columns).

Both formats are lossless for any episode: any text (U+2028, lone surrogates), any float the
policy returned (NaN log-probs included) and any seed. JSONL lines are ASCII JSON (non-ASCII
escaped), so no line-splitting rule can cut a record. Parquet holds one real column per
``Episode`` field (``messages``, ``turns`` with token ids, masks and log-probs, ``failure``, ...),
so ``datasets.load_dataset("parquet", ...)`` and pandas see usable columns; see
``docs/episode_files.md`` and ``toolgym.rollouts.arrow_codec``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from toolgym.errors import ConfigError, TaskFileError
from toolgym.rollouts.arrow_codec import decode_rows, dumps, encode_rows
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
        tmp = path.with_name(path.name + ".partial")
        with tmp.open("w", encoding="ascii") as fh:
            for ep in episodes:
                fh.write(dumps(ep.model_dump(mode="python")) + "\n")
        tmp.replace(path)  # a crash mid-write never leaves a half file under the real name
        return path
    pa, pq = _pyarrow()
    rows, schema = encode_rows([e.model_dump(mode="python") for e in episodes], Episode)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def load_episodes(path: str | Path) -> list[Episode]:
    """Read episodes written by ``save_episodes``; bad lines are reported with their number."""
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such episode file")
    if kind == ".parquet":
        records = _parquet_records(path)
    else:
        records = _jsonl_records(path)
    episodes = []
    for lineno, record in enumerate(records, start=1):
        if record is None:
            continue
        if isinstance(record, ValueError):
            raise TaskFileError(f"{path}:{lineno}: not an episode record (Invalid JSON: {record})")
        try:
            episodes.append(Episode.model_validate(record))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"field '{where}': {first['msg']}" if where else first["msg"]
            raise TaskFileError(f"{path}:{lineno}: not an episode record ({detail})") from None
    return episodes


def _jsonl_records(path: Path) -> list[Any]:
    """One parsed record per line; only ``\\n`` ends a line (JSON escapes it inside strings)."""
    out: list[Any] = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            out.append(None)
            continue
        try:
            out.append(json.loads(line.decode("utf-8")))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            out.append(ValueError(str(exc)[:200]))
    return out


def _parquet_records(path: Path) -> list[Any]:
    _, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise TaskFileError(f"{path}: not a Parquet episode file ({type(exc).__name__}: {exc})") from None
    if "record" in table.column_names and "messages" not in table.column_names:
        return [json.loads(r) for r in table.column("record").to_pylist()]  # files written before nested columns
    return decode_rows(table.to_pylist(), table.schema, Episode)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("Parquet needs pyarrow: pip install 'toolgym[parquet]'") from exc
    return pa, pq
