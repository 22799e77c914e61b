"""Argument values written as bare text (GLM-4.5, Qwen3-Coder), typed from the tool's schema,
and JSON objects found inside free text (Llama, Mistral)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from toolgym.envs.formats.base import dumps, loads
from toolgym.envs.types import ToolSpec

# A string token (escapes included) or one brace/bracket: scanning these skips brackets in strings.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_PYTHON_WORDS = {"True": True, "False": False, "None": None}


def param_types(tools: Sequence[ToolSpec] | None, name: str) -> dict[str, Any] | None:
    """``{parameter: its schema "type"}`` of tool ``name``; None when the tool is not offered."""
    for spec in tools or ():
        if spec.function.name == name:
            props = spec.function.parameters.get("properties")
            if not isinstance(props, dict):
                return {}
            return {key: (sub.get("type") if isinstance(sub, dict) else None) for key, sub in props.items()}
    return None


def _is_string_type(kind: Any) -> bool:
    return kind == "string" or (isinstance(kind, list) and "string" in kind and all(k in ("string", "null") for k in kind))


def typed_value(raw: str, kind: Any, known: bool) -> Any:
    """A bare-text value as the tool expects it.

    ``kind`` is the parameter's schema type and ``known`` whether the schema was found. A
    string parameter takes the text as it is; any other is JSON-decoded (``True``/``False``/
    ``None`` as Python spells them too). Text that does not decode stays a string, so the tool's
    argument check names the parameter and the expected type. Without a schema, text that
    decodes to a non-string JSON value becomes that value.
    """
    if known and _is_string_type(kind):
        return raw
    text = raw.strip()
    if text in _PYTHON_WORDS:
        return _PYTHON_WORDS[text]
    try:
        value = loads(text)
    except (json.JSONDecodeError, ValueError):
        return raw
    if isinstance(value, str) and not known:
        return raw  # '"x"' without a schema: keep what the model wrote
    return value


def text_value(value: Any) -> str:
    """How a value is written as bare text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else dumps(value)


def json_end(text: str, start: int) -> int:
    """Index just past the JSON object or array opening at ``text[start]``; -1 if it never closes."""
    depth = 0
    for match in _TOKENS.finditer(text, start):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return match.end()
    return -1
