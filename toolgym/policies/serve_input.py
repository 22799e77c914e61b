"""Reading a ``toolgym serve`` request body: every malformed request becomes a 4xx, never a 500.

The body is read with a size cap (413), its content type must be JSON when one is given (415),
it is parsed by the project's safe JSON loader (deep nesting, over-long integers, huge
numbers and NaN are refused rather than crashing the parser: 400), text holding lone
surrogates (``"\\ud800"``, which no tokenizer can encode) is refused with the field that holds
it (400), and the pydantic request model's errors are summarized by field (400).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from toolgym.envs import safejson

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body accepted by default."""
_LIMITS = safejson.JsonLimits(max_chars=MAX_BODY_BYTES, max_depth=64, max_digits=100)

Model = TypeVar("Model", bound=BaseModel)


class BadRequest(ValueError):
    """A request the server cannot serve, answered with ``status`` (4xx) and an OpenAI error body."""

    def __init__(self, message: str, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


async def read_request(request: Any, model: type[Model], max_bytes: int = MAX_BODY_BYTES) -> Model:
    """The body of a Starlette ``request`` validated as ``model``.

    Raises:
        BadRequest: 415 for a non-JSON content type, 413 for a body over ``max_bytes``, 400 for
            anything unreadable or invalid (the message names the field).
    """
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise BadRequest(f"content-type must be application/json, got {media[:100]!r}", "unsupported_media_type", 415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest(f"request body is {int(declared):,} bytes; this server takes at most {max_bytes:,}", "body_too_large", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BadRequest(f"request body is over {max_bytes:,} bytes, the most this server takes", "body_too_large", 413)
    try:
        data = safejson.loads(bytes(body), dataclasses.replace(_LIMITS, max_chars=max(max_bytes, 1)))
    except safejson.JsonLimitError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg[:200]}", "invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {_json_type(data)}", "invalid_json")
    where = _unencodable(data)
    if where is not None:
        raise BadRequest(f"{where[:200]} holds a lone surrogate (not valid Unicode text); send UTF-8 text", "invalid_text")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {summarize(exc)}", "invalid_request") from None


def summarize(exc: ValidationError, most: int = 3) -> str:
    """The first ``most`` errors as ``field.path: message`` (inputs left out: they may be huge)."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:most]]
    more = exc.error_count() - len(parts)
    return "; ".join(parts)[:1000] + (f" (and {more} more)" if more > 0 else "")


def _unencodable(data: Any) -> str | None:
    """Path of the first string (key or value) that is not encodable as UTF-8, else None."""
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if not _utf8(node):
                return path
        elif isinstance(node, dict):
            for key, value in node.items():
                if not _utf8(key):
                    return f"a key of {path}"
                stack.append((value, f"{key}" if path == "body" else f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node))
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
