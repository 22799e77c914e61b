"""Reading and writing task files (JSONL, one task per line) with errors that point at the line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from toolgym.envs import safejson
from toolgym.envs.types import Task
from toolgym.errors import TaskFileError


def load_tasks(path: str | Path) -> list[Task]:
    """Read tasks from a JSONL file.

    Raises:
        TaskFileError: naming the file, the line, the field and the expected form.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"{path}: no such task file" + (" (it is a directory)" if path.is_dir() else ""))
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TaskFileError(f"{path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                data = safejson.loads(line, safejson.FILE_LIMITS)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            try:
                task = Task.model_validate(data)
            except ValidationError as exc:
                raise TaskFileError(f"{path}:{lineno}: {_explain(exc)}") from None
            if task.id in seen:
                raise TaskFileError(f"{path}:{lineno}: task id {task.id!r} already used on line {seen[task.id]}; ids must be unique")
            seen[task.id] = lineno
            tasks.append(task)
    return tasks


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        field = ".".join(str(p) for p in err["loc"]) or "(task)"
        if err["type"] == "missing":
            parts.append(f"field '{field}' is required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"field '{field}' is not a task field (known: {', '.join(Task.model_fields)})")
        else:
            parts.append(f"field '{field}': {err['msg']} (got {str(err.get('input'))[:60]!r})")
    return "; ".join(parts)


def save_tasks(tasks: Iterable[Task], path: str | Path) -> Path:
    """Write tasks as JSONL; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for task in tasks:
            fh.write(task.model_dump_json(exclude_defaults=True) + "\n")
    return path
