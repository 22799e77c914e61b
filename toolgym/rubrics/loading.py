"""Reading rubrics from YAML or JSON files, with errors that name the file and the field.

>>> from toolgym.rubrics.loading import rubric_from_dict
>>> rubric_from_dict({"name": "r", "criteria": [{"id": "x", "description": "d",
...     "source": {"type": "check", "check": "final_state_matchs_gold"}}]}, origin="r.yaml")
Traceback (most recent call last):
...
toolgym.rubrics.loading.RubricError: r.yaml: criteria[0] (id 'x').source.check: unknown check 'final_state_matchs_gold'. Did you mean 'final_state_matches_gold'...
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from toolgym.envs import safejson
from toolgym.envs.taskfile import refused_number
from toolgym.errors import ConfigError
from toolgym.rubrics.rubric import Rubric
from toolgym.rubrics.shape import find_problem


class RubricError(ConfigError):
    """A rubric file or mapping is not a valid rubric."""


def load_rubric(path: str | Path) -> Rubric:
    """Load a rubric from a ``.yaml``/``.yml`` or ``.json`` file.

    Raises:
        RubricError: the file is missing, does not parse, or breaks the rubric model; the
            message names the file, the field path and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise RubricError(f"{path}: no such rubric file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RubricError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the file as UTF-8") from None
    if path.suffix in (".yaml", ".yml"):
        if len(text) > safejson.FILE_LIMITS.max_chars:
            raise RubricError(f"{path}: {len(text):,} characters; a rubric file holds at most {safejson.FILE_LIMITS.max_chars:,}")
        try:
            data = yaml.safe_load(text)
        except RecursionError:
            raise RubricError(f"{path}: YAML nests too deep to read; a rubric needs a few levels only") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
            raise RubricError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    elif path.suffix == ".json":
        try:
            data = safejson.loads(text, safejson.FILE_LIMITS)
        except json.JSONDecodeError as exc:
            refused = refused_number(text)  # safejson's refusals carry no position: find the token
            if refused is not None:
                line, column = text.count("\n", 0, refused.offset) + 1, refused.offset - text.rfind("\n", 0, refused.offset)
                where = _where(refused.loc, _lenient_json(text)) if refused.loc else "(top level)"
                raise RubricError(f"{path}: line {line}, column {column}: {where}: {refused.why}; write a finite value") from None
            raise RubricError(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    else:
        raise RubricError(f"{path}: unknown rubric file type {path.suffix!r}; use .yaml, .yml or .json")
    return rubric_from_dict(data, origin=str(path))


def rubric_from_dict(data: Any, origin: str = "<rubric>") -> Rubric:
    """Validate a parsed mapping as a rubric.

    Args:
        data: The mapping (from YAML, JSON or code).
        origin: Where it came from, used as the prefix of error messages.

    Raises:
        RubricError: the mapping breaks the rubric model.
    """
    if not isinstance(data, dict):
        raise RubricError(f"{origin}: a rubric is a mapping with 'name' and 'criteria', got {type(data).__name__}")
    problem = find_problem(data)  # before anything walks it: YAML aliases can stand for a huge or endless tree
    if problem is not None:
        loc, what = problem
        where = _where(loc[:6], data) + (f"... ({len(loc)} levels down)" if len(loc) > 6 else "")
        raise RubricError(f"{origin}: {where}: {what}")
    for loc, value in _non_finite(data, ()):  # before validation: its own messages would hide the cause
        raise RubricError(f"{origin}: {_where(loc, data)}: {value} is not a finite number; write a finite value")
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as exc:
        lines = [f"{origin}: {_where(err['loc'], data)}: {_message(err)}" for err in exc.errors(include_url=False)]
        raise RubricError("\n".join(lines)) from None
    # After validation, so numbers written as text ("1e400") are caught once pydantic made them floats.
    for loc, value in _non_finite(rubric.model_dump(), ()):
        raise RubricError(f"{origin}: {_where(loc, data)}: {value} is not a finite number; write a finite value")
    return rubric


def _lenient_json(text: str) -> dict[str, Any]:
    """The text parsed as Python's json module would (NaN allowed), for naming criteria by id; {} if not."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _non_finite(node: Any, loc: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], float]]:
    """Every NaN or infinite float in a dumped rubric, with its field path (first one first)."""
    if isinstance(node, float) and not math.isfinite(node):
        return [(loc, node)]
    if isinstance(node, dict):
        return [hit for key, child in node.items() for hit in _non_finite(child, (*loc, key))]
    if isinstance(node, (list, tuple)):
        return [hit for i, child in enumerate(node) for hit in _non_finite(child, (*loc, i))]
    return []


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """``('criteria', 2, 'source', 'check', 'check')`` -> ``criteria[2] (id 'x').source.check``."""
    parts: list[str] = []
    node: Any = data
    previous: Any = None
    for key in loc:
        if key in ("check", "critic") and previous == "source" and isinstance(node, dict) and node.get("type") == key:
            previous = key  # the discriminator tag pydantic inserts, not a field of the file
            continue
        if isinstance(key, int):
            label = f"[{key}]"
            item = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(item, dict) and "id" in item:
                label += f" (id {item['id']!r})"
            parts.append(label)
            node = item
        else:
            parts.append(("." if parts else "") + str(key))
            node = node.get(key) if isinstance(node, dict) else None
        previous = key
    return "".join(parts) or "(top level)"


def _message(err: Any) -> str:  # a pydantic ErrorDetails
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown field (got {err.get('input')!r}); check the spelling against the rubric model"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "finite_number":
        return f"{err.get('input')!r} is not a finite number; write a finite value"
    if err["type"] == "union_tag_invalid":
        return f"{msg}; write source: {{type: check, check: NAME}} or {{type: critic, critic: NAME}}"
    return msg
