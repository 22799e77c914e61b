"""Stage caches of the data engine: JSON-lines shards written atomically, keyed by a fingerprint.

A stage writes its work in shards (``<root>/<stage>/<name>.jsonl``). A shard file exists only
once it is complete (written to a temporary file, flushed, then renamed), so a run killed at
any point leaves whole shards and nothing half-written; the resumed run reads those and
computes the rest. Every item of a shard is a function of the config and the shard's index
alone, so a resumed run writes the same bytes an uninterrupted one would.

A stage directory carries the fingerprint of what its items depend on (config and upstream
stages); a different fingerprint clears the stage, so a changed config never meets stale shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from toolgym.envs.digest import canonical_json


def fingerprint(*parts: Any) -> str:
    """A short digest of JSON-able ``parts`` (config sections, upstream fingerprints)."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rows as JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


class StageCache:
    """The shards of one stage under ``root/stage``.

    Args:
        root: The run's cache folder.
        stage: Stage name (a folder).
        key: Fingerprint of everything the stage's items depend on.
    """

    def __init__(self, root: Path, stage: str, key: str):
        self.dir = Path(root) / stage
        self.key = key
        self.hits = 0
        """Shards read from the cache in this run."""
        self.misses = 0
        """Shards computed in this run."""
        stamp = self.dir / "FINGERPRINT"
        if self.dir.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
            shutil.rmtree(self.dir)  # made from another config: none of it may be reused
        if not stamp.exists():
            atomic_write_text(stamp, key + "\n")

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.jsonl"

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def shard(self, name: str, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The rows of shard ``name``: read if it is complete, else computed and written."""
        path = self.path(name)
        if path.exists():
            self.hits += 1
            return read_jsonl(path)
        return self.put(name, compute())

    def put(self, name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write shard ``name`` (rows computed elsewhere, for example on a Ray actor); returns it as read back.

        Callers use the rows read back, never the computed ones: JSON sorts keys, and a later
        step that iterates a dict must see the same order whether the shard was cached or not.
        """
        write_jsonl(self.path(name), rows)
        self.misses += 1
        return read_jsonl(self.path(name))

    def read(self, name: str) -> list[dict[str, Any]]:
        self.hits += 1
        return read_jsonl(self.path(name))
