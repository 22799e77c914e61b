"""Reading and writing task files (JSONL, one task per line) with errors that point at the line."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
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
                refused = refused_number(line)  # safejson's refusals carry no position: find the token
                if refused is not None:
                    where = f"field '{refused.field}'" if refused.loc else "the line"
                    raise TaskFileError(
                        f"{path}:{lineno}: {where} (column {refused.offset + 1}): {refused.why}; write a finite number, null or a string"
                    ) from None
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


# One JSON token: a string (escapes included), a number, a literal, or one punctuation mark.
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)'
    r"|(?P<const>NaN|-?Infinity)|(?P<lit>true|false|null)|(?P<punct>[\[\]{}:,]))",
    re.DOTALL,
)


@dataclass(frozen=True)
class RefusedNumber:
    """A number in JSON text that JSON or a 64-bit float cannot hold, and where it is."""

    loc: tuple[str | int, ...]
    """Keys and indices down to it (empty: the whole text is that number)."""
    offset: int
    """Its first character's index in the text."""
    why: str
    """What is wrong with it, for a message."""

    @property
    def field(self) -> str:
        """The path as ``metadata.scores[2]``."""
        return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in self.loc).lstrip(".")


def refused_number(text: str) -> RefusedNumber | None:
    """The first number JSON or a 64-bit float cannot hold (NaN, Infinity, 1e400, 5,000 digits) in ``text``.

    ``safejson`` refuses such numbers without a position (its parse hooks get the token only);
    this scans the text for them, keeping track of the keys and indices on the way.

    Returns:
        The number's field path, offset and problem; None when there is none before the text's
        first syntax error.

    >>> refused_number('{"a": [1, {"b": NaN}]}').field
    'a[1].b'
    """
    stack: list[_Frame] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or not match.group().strip():
            return None
        pos, kind = match.end(), match.lastgroup or ""
        token = match.group(kind)
        if kind == "const" or (kind == "num" and _unrepresentable(token)):
            return RefusedNumber(loc=tuple(f.at for f in stack), offset=match.start(kind), why=_why(token))
        if kind == "str" and stack and stack[-1].wants_key:
            stack[-1].at, stack[-1].wants_key = json.loads(token), False  # an object key; its ':' follows
        elif kind == "punct":
            _structure(stack, token)
    return None


class _Frame:
    """One open container of the scanned line: where in it the scanner is."""

    def __init__(self, is_array: bool):
        self.is_array = is_array
        self.at: str | int = 0 if is_array else ""
        """The current index (array) or key (object)."""
        self.wants_key = not is_array


def _structure(stack: list[_Frame], mark: str) -> None:
    """Open or close a container, or move on to its next item or key."""
    if mark in "[{":
        stack.append(_Frame(is_array=mark == "["))
    elif mark in "]}" and stack:
        stack.pop()
    elif mark == "," and stack:
        top = stack[-1]
        if top.is_array and isinstance(top.at, int):
            top.at += 1
        else:
            top.wants_key = True


def _unrepresentable(token: str) -> bool:
    digits = len(token.lstrip("-"))
    if re.fullmatch(r"-?\d+", token):
        return digits > safejson.FILE_LIMITS.max_digits
    return math.isinf(float(token))


def _why(token: str) -> str:
    if token in ("NaN", "Infinity", "-Infinity"):
        return f"{token} is not a JSON number"
    if re.fullmatch(r"-?\d+", token):
        return f"an integer of {len(token.lstrip('-')):,} digits (at most {safejson.FILE_LIMITS.max_digits:,})"
    return f"{token[:40]} is too large for a 64-bit float"


def save_tasks(tasks: Iterable[Task], path: str | Path) -> Path:
    """Write tasks as JSONL; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for task in tasks:
            fh.write(task.model_dump_json(exclude_defaults=True) + "\n")
    return path
