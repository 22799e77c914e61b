"""Seeded generation of JSON values that fit a JSON Schema (the subset tools use).

``ValueGenerator`` covers what tool schemas contain in practice: types (and type lists),
``enum``/``const``/``examples``, objects with required and optional properties, arrays with
length bounds, ``uniqueItems`` and ``prefixItems``, numeric bounds and ``multipleOf``, string
lengths and common ``format`` values, ``anyOf``/``oneOf``/``allOf`` and local ``$ref``.
``check_generable`` rejects, when an environment is built, schemas that use keywords it
cannot satisfy by construction (such as ``pattern``), unless the node lists ``examples``.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from toolgym.envs.sim.schema import SchemaError

WORDS = ("alpha", "amber", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "juniper",
         "kestrel", "lumen", "maple", "nova", "onyx", "pine", "quartz", "river", "sierra", "tundra")
NAMES = ("Ada Park", "Ben Ortiz", "Chloe Nakamura", "Dev Rao", "Eva Lind", "Farid Haddad", "Grace Ho")
STATUSES = ("active", "pending", "done", "cancelled")
MAX_DEPTH = 6
"""Below this depth only required parts are generated, so recursive schemas terminate."""
HARD_DEPTH = 48
"""A schema that still requires more nesting here recurses without a base case."""
MAX_PARTS = 20_000
"""Most values one ``generate`` call builds (bounded time and size for any schema)."""

_ENUMERATED = ("enum", "const", "examples")
_UNSUPPORTED = ("pattern", "not", "if", "dependentRequired", "dependentSchemas", "dependencies", "contains",
                "minProperties", "maxProperties", "$dynamicRef")


def check_generable(schema: Any, *, where: str, path: str = "(root)") -> None:
    """Raise ``SchemaError`` if ``ValueGenerator`` cannot produce values for ``schema``.

    Args:
        schema: A schema that already passed ``compile_schema``.
        where: What the schema describes, for the message.
        path: Location inside the schema (for recursion).
    """
    if not isinstance(schema, dict) or any(k in schema for k in _ENUMERATED):
        return
    for key in _UNSUPPORTED:
        if key in schema:
            raise SchemaError(
                f"{where}: keyword {key!r} at '{path}' is not supported by the schema simulator; "
                "add 'examples' (or 'enum') to that node, or simulate this tool with LLMSimulator"
            )
    ref = schema.get("$ref")
    if ref is not None and not str(ref).startswith("#"):
        raise SchemaError(f"{where}: $ref {ref!r} at '{path}' is not local; inline it or put it under '$defs'")
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_generable(sub, where=where, path=f"{path}.{key}.{name}")
    for key in ("items", "additionalProperties"):
        check_generable(schema.get(key), where=where, path=f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(key) or []):
            check_generable(sub, where=where, path=f"{path}.{key}.{i}")


class ValueGenerator:
    """Generates values for the schemas of one document (``root`` resolves local ``$ref``).

    Args:
        root: The whole schema document.

    Example:
        >>> gen = ValueGenerator({"type": "integer", "minimum": 3, "maximum": 5})
        >>> 3 <= gen.generate(random.Random(0)) <= 5
        True
    """

    def __init__(self, root: Any):
        self.root = root if isinstance(root, dict) else {}
        self._parts = 0

    def generate(self, rng: random.Random, schema: Any = None, *, name: str = "", depth: int = 0) -> Any:
        """A value for ``schema`` (default: the root); ``name`` is the property name, a hint.

        Raises:
            SchemaError: the schema needs more than ``MAX_PARTS`` values or ``HARD_DEPTH`` levels.
        """
        if depth == 0:
            self._parts = 0
        self._parts += 1
        if self._parts > MAX_PARTS or depth > HARD_DEPTH:
            limit = f"more than {MAX_PARTS:,} values" if self._parts > MAX_PARTS else f"nesting beyond {HARD_DEPTH} levels"
            raise SchemaError(f"the schema requires {limit} (a required part refers back to itself, or sizes are huge)")
        schema = self.resolve(self.root if schema is None else schema)
        if schema is True or not isinstance(schema, dict):
            return self._string({}, rng, name)
        if "const" in schema:
            return schema["const"]
        for key in ("enum", "examples"):
            if schema.get(key):
                return rng.choice(schema[key])
        if "allOf" in schema:
            return self.generate(rng, self._merge(schema), name=name, depth=depth)
        for key in ("oneOf", "anyOf"):
            if schema.get(key):
                branch = dict(rng.choice(schema[key]))
                rest = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
                return self.generate(rng, {**rest, **self.resolve(branch)}, name=name, depth=depth)
        kind = self._pick_type(schema, rng)
        return _MAKERS[kind](self, schema, rng, name, depth)

    # ------------------------------------------------------------------ structure

    def resolve(self, schema: Any) -> Any:
        """``schema`` with local ``$ref`` followed (sibling keywords kept)."""
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            target: Any = self.root
            for part in str(schema["$ref"]).lstrip("#").strip("/").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
            if seen > 32:
                raise SchemaError(f"$ref cycle without a base case at {schema.get('$ref')!r}")
        return schema

    def _merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = self.resolve(sub)
            props = {**merged.get("properties", {}), **sub.get("properties", {})}
            required = sorted(set(merged.get("required", [])) | set(sub.get("required", [])))
            merged = {**merged, **sub, "properties": props, "required": required}
        if not merged["properties"]:
            merged.pop("properties")
        return merged

    @staticmethod
    def _pick_type(schema: dict[str, Any], rng: random.Random) -> str:
        declared = schema.get("type")
        if isinstance(declared, list) and declared:
            concrete = [t for t in declared if t != "null"]
            if not concrete or ("null" in declared and rng.random() < 0.1):
                return "null"
            return rng.choice(concrete)
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def _object(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> dict[str, Any]:
        required = set(schema.get("required", []))
        out: dict[str, Any] = {}
        for pname, sub in (schema.get("properties") or {}).items():
            if pname in required or (depth < MAX_DEPTH and rng.random() < 0.5):
                out[pname] = self.generate(rng, sub, name=pname, depth=depth + 1)
        for pname in sorted(required - set(out)):  # required but not declared: anything fits
            extra = schema.get("additionalProperties")
            out[pname] = self.generate(rng, extra if isinstance(extra, dict) else {}, name=pname, depth=depth + 1)
        return out

    def _array(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", low + 3))
        n = low if depth >= MAX_DEPTH else rng.randint(low, max(low, min(high, low + 3)))
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", {})
        out: list[Any] = []
        seen: set[str] = set()
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else items
            if sub is False:
                break
            value = self.generate(rng, sub, name=name, depth=depth + 1)
            if schema.get("uniqueItems"):
                for _ in range(16):
                    if json.dumps(value, sort_keys=True) not in seen:
                        break
                    value = self.generate(rng, sub, name=name, depth=depth + 1)
                key = json.dumps(value, sort_keys=True)
                if key in seen and len(out) >= low:  # the item schema has run out of distinct values
                    break
                seen.add(key)
            out.append(value)
        return out

    # ------------------------------------------------------------------ scalars

    def _integer(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> int:
        low, high = _bounds(schema, integer=True)
        step = schema.get("multipleOf")
        if step:
            return int(_multiple(rng, low, high, step))
        return rng.randint(int(low), max(int(low), int(high)))

    def _number(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> float | int:
        low, high = _bounds(schema, integer=False)
        step = schema.get("multipleOf")
        if step:
            return _multiple(rng, low, high, step)
        value = round(low + (high - low) * rng.random(), 2)
        if not _fits(value, schema):  # rounding crossed an exclusive bound: take the exact middle
            value = (low + high) / 2
        return value

    def _string(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int = 0) -> str:
        text = _formatted(schema.get("format"), rng) or _hinted(name.lower(), rng)
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        while len(text) < low:
            text += rng.choice(WORDS)
        return text[: int(high)] if high is not None else text

    def _boolean(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> bool:
        return rng.random() < 0.5

    def _null(self, schema: dict[str, Any], rng: random.Random, name: str, depth: int) -> None:
        return None


_MAKERS = {
    "object": ValueGenerator._object, "array": ValueGenerator._array, "string": ValueGenerator._string,
    "integer": ValueGenerator._integer, "number": ValueGenerator._number, "boolean": ValueGenerator._boolean,
    "null": ValueGenerator._null,
}


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[float, float]:
    """Inclusive [low, high] from minimum/maximum and their exclusive forms (span 1000 when open)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    tiny = 1 if integer else 1e-6
    if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
        low = max(low, ex_low + tiny) if low is not None else ex_low + tiny
    if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
        high = min(high, ex_high - tiny) if high is not None else ex_high - tiny
    if integer:
        low = math.ceil(low) if low is not None else None
        high = math.floor(high) if high is not None else None
    if low is None:
        low = 0 if high is None else high - 1000
    if high is None:
        high = low + 1000
    return low, high


def _multiple(rng: random.Random, low: float, high: float, step: float) -> float:
    """A multiple of ``step`` in [low, high] that also passes a float-division check."""
    k_low, k_high = math.ceil(low / step), math.floor(high / step)
    value = k_low * step
    for _ in range(20):  # float steps (0.1) make some products inexact: try other multiples
        value = rng.randint(k_low, max(k_low, k_high)) * step
        for candidate in (value, round(value, 10)):
            quotient = candidate / step
            if quotient == int(quotient):
                return candidate
    return value


def _fits(value: float, schema: dict[str, Any]) -> bool:
    checks = (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
              ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b))
    return all(test(schema[key]) for key, test in checks if isinstance(schema.get(key), (int, float)))


def _formatted(fmt: Any, rng: random.Random) -> str | None:
    month, day, hour, minute = rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)
    word = rng.choice(WORDS)
    return {
        "date-time": f"2025-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z",
        "date": f"2025-{month:02d}-{day:02d}",
        "time": f"{hour:02d}:{minute:02d}:00",
        "email": f"{word}@example.com",
        "uri": f"https://example.com/{word}",
        "url": f"https://example.com/{word}",
        "hostname": f"{word}.example.com",
        "ipv4": f"10.{month}.{day}.{hour}",
        "uuid": f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}",
    }.get(str(fmt)) if fmt else None


def _hinted(name: str, rng: random.Random) -> str:
    """A plausible string for a property called ``name`` (ids look like ids, emails like emails)."""
    if name == "id" or name.endswith("_id") or name.endswith("id") and len(name) > 2:
        prefix = (name[:-3] if name.endswith("_id") else name[:-2])[:3] or "id"
        return f"{prefix}_{rng.getrandbits(32):08x}"
    if name.endswith("name"):
        return rng.choice(NAMES)
    if "email" in name:
        return f"{rng.choice(WORDS)}@example.com"
    if name.endswith("_at") or "date" in name or "time" in name:
        return _formatted("date-time", rng) or ""
    if name == "status" or name.endswith("_status"):
        return rng.choice(STATUSES)
    if "url" in name or "link" in name:
        return f"https://example.com/{rng.choice(WORDS)}"
    count = rng.randint(1, 3)
    return " ".join(rng.choice(WORDS) for _ in range(count))
