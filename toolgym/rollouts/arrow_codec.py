"""Episodes as nested Arrow columns, derived from the pydantic models so new fields need no code.

Every field of ``Episode`` becomes a real column: models become structs, lists become lists,
``dict[str, float]`` becomes a list of key/value structs (``datasets`` has no map type), enums and literals become strings. Fields typed ``Any``
(tool arguments and outputs, task metadata, initial states) hold arbitrary JSON, so they are
stored as JSON text. A message list mixes four message kinds; its struct holds the union of
their fields and the ``role`` discriminator says which ones belong to each row.

Lossless for any value is the rule, so a column whose values Arrow cannot hold natively
(an int beyond int64, a string with a lone surrogate, which UTF-8 cannot encode) is written as
JSON text for that file, and the field's metadata records it (``toolgym.encoding = json``).

>>> from toolgym.rollouts.episode import Episode
>>> str(arrow_type(Episode).field("turns").type.value_type.field("token_ids").type)
'list<item: int64>'
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

ENCODING = b"toolgym.encoding"
_KIND = b"toolgym.kind"
_INT64 = (-(2**63), 2**63 - 1)


# --------------------------------------------------------------------------- JSON text for Any values


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def dumps(value: Any) -> str:
    """JSON text that keeps NaN/inf, big ints and lone surrogates (escaped as ``\\udXXX``)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True, default=_jsonable, separators=(",", ":"))


# --------------------------------------------------------------------------- types


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` was allowed)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
        return inner, len(args) < len(typing.get_args(tp))
    return tp, False


def _variants(tp: Any) -> list[type[BaseModel]] | None:
    """The models of a union of models (a discriminated message union), else None."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
            return list(args)
    return None


def arrow_type(tp: Any) -> Any:
    """The Arrow type that stores values of the Python/pydantic type ``tp`` natively."""
    import pyarrow as pa

    tp, _ = _unwrap(tp)
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return pa.struct([pa.field(name, arrow_type(f.annotation)) for name, f in tp.model_fields.items()])
    if (variants := _variants(tp)) is not None:
        fields: dict[str, Any] = {}
        for model in variants:
            for name, f in model.model_fields.items():
                fields.setdefault(name, pa.field(name, arrow_type(f.annotation)))
        return pa.struct(list(fields.values()))
    if origin is list:
        return pa.list_(arrow_type(typing.get_args(tp)[0]))
    if origin is dict:
        key, val = typing.get_args(tp)
        if key is str and val in (int, float, str, bool):
            return pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", arrow_type(val))]))
        return pa.string()  # free-form JSON
    if origin is typing.Literal or (isinstance(tp, type) and issubclass(tp, (str, enum.Enum))):
        return pa.string()
    scalar = {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}
    return scalar.get(tp, pa.string())  # Any and everything else: JSON text


def _is_json_text(tp: Any) -> bool:
    import pyarrow as pa

    tp, _ = _unwrap(tp)
    return arrow_type(tp) == pa.string() and not (
        tp is str or typing.get_origin(tp) is typing.Literal or (isinstance(tp, type) and issubclass(tp, (str, enum.Enum)))
    )


_NODES: dict[int, tuple[Any, tuple[str, Any]]] = {}


def _node(tp: Any) -> tuple[str, Any]:
    """How values of ``tp`` are walked: ``("model", cls)``, ``("variants", [cls, ...])``,
    ``("list", item type)``, ``("map", value type)``, ``("json", None)`` or ``("leaf", arrow type)``.

    Computed once per annotation object (the walkers visit every value of every episode, and the
    typing introspection would otherwise dominate a save).
    """
    hit = _NODES.get(id(tp))
    if hit is not None and hit[0] is tp:
        return hit[1]
    import pyarrow as pa

    inner, _ = _unwrap(tp)
    origin = typing.get_origin(inner)
    node: tuple[str, Any]
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        node = ("model", inner)
    elif (variants := _variants(inner)) is not None:
        node = ("variants", variants)
    elif origin is list:
        node = ("list", typing.get_args(inner)[0])
    elif origin is dict and arrow_type(inner) != pa.string():
        node = ("map", typing.get_args(inner)[1])
    elif _is_json_text(inner):
        node = ("json", None)
    else:
        node = ("leaf", arrow_type(inner))
    _NODES[id(tp)] = (tp, node)  # the annotation is kept alive, so its id cannot be reused
    return node


# --------------------------------------------------------------------------- encode


def _fits(value: Any, atype: Any) -> bool:
    """Whether a leaf value can be stored natively in a column of ``atype``."""
    import pyarrow as pa

    if value is None:
        return True
    if pa.types.is_int64(atype):
        return _INT64[0] <= value <= _INT64[1]
    if pa.types.is_string(atype) and isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _walk(value: Any, tp: Any, path: str, visit: Callable[[str, Any, Any], Any], whole: set[str] = frozenset()) -> Any:  # type: ignore[assignment]  # an immutable empty default, read only
    """Rebuild ``value`` (a ``model_dump`` tree) leaf by leaf through ``visit(path, value, tp)``.

    Paths in ``whole`` are visited as one leaf (they are written as JSON text).
    """
    if value is None:
        return None
    if path in whole:
        return visit(path, value, tp)
    kind, arg = _node(tp)
    if kind == "model" or kind == "variants":
        model = arg if kind == "model" else _variant_for(arg, value)
        return {n: _walk(value.get(n), f.annotation, f"{path}.{n}", visit, whole) for n, f in model.model_fields.items() if n in value}
    if kind == "list":
        return [_walk(v, arg, f"{path}[]", visit, whole) for v in value]
    if kind == "map":
        return [{"key": visit(f"{path}{{key}}", k, str), "value": _walk(v, arg, f"{path}{{}}", visit, whole)} for k, v in value.items()]
    return visit(path, value, tp)


def _variant_for(variants: list[type[BaseModel]], value: dict[str, Any]) -> type[BaseModel]:
    for model in variants:
        tag = model.model_fields.get("role")
        if tag is not None and tag.default == value.get("role"):
            return model
    raise ValueError(f"no message kind has role {value.get('role')!r}")


def _leaf(path: str, value: Any, tp: Any, json_paths: set[str]) -> Any:
    if path.endswith("{key}"):
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    if path in json_paths or _node(tp)[0] == "json":
        return dumps(value)
    return value


def encode_rows(records: list[dict[str, Any]], model: type[BaseModel]) -> tuple[list[dict[str, Any]], Any]:
    """(rows ready for ``pa.Table.from_pylist``, the schema) for ``model_dump`` trees of ``model``."""
    import pyarrow as pa

    json_paths: set[str] = set()  # leaf paths that fall back to JSON text in this file (first pass)

    def probe(path: str, value: Any, tp: Any) -> Any:
        kind, atype = _node(tp)
        if kind == "leaf" and not _fits(value.value if isinstance(value, enum.Enum) else value, atype):
            # a map key that UTF-8 cannot hold sends the whole map to JSON text
            json_paths.add(path.removesuffix("{key}"))
        return value

    for record in records:
        _walk(record, model, "", probe)
    rows = [_walk(r, model, "", lambda p, v, t: _leaf(p, v, t, json_paths), json_paths) for r in records]
    return rows, pa.schema(_schema_fields(model, "", json_paths))


def _schema_fields(model: type[BaseModel], path: str, json_paths: set[str]) -> list[Any]:
    return [_field(name, f.annotation, f"{path}.{name}", json_paths) for name, f in model.model_fields.items()]


def _field(name: str, tp: Any, path: str, json_paths: set[str]) -> Any:
    import pyarrow as pa

    inner, _ = _unwrap(tp)
    if path in json_paths or _is_json_text(inner):
        return pa.field(name, pa.string(), metadata={ENCODING: b"json"})
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return pa.field(name, pa.struct(_schema_fields(inner, path, json_paths)))
    if (variants := _variants(inner)) is not None:
        fields: dict[str, Any] = {}
        for m in variants:
            for n, f in m.model_fields.items():
                fields.setdefault(n, _field(n, f.annotation, f"{path}.{n}", json_paths))
        return pa.field(name, pa.struct(list(fields.values())))
    origin = typing.get_origin(inner)
    if origin is list:
        item = _field("item", typing.get_args(inner)[0], f"{path}[]", json_paths)
        return pa.field(name, pa.list_(item))
    if origin is dict:
        val = _field("value", typing.get_args(inner)[1], f"{path}{{}}", json_paths)
        return pa.field(name, pa.list_(pa.struct([pa.field("key", pa.string()), val])), metadata={_KIND: b"map"})
    return pa.field(name, arrow_type(inner))


# --------------------------------------------------------------------------- decode


def decode_rows(rows: list[dict[str, Any]], schema: Any, model: type[BaseModel]) -> list[dict[str, Any]]:
    """Turn rows read from Arrow back into ``model_validate``-ready trees."""
    json_paths: set[str] = set()
    for field in schema:
        _json_paths(field, f".{field.name}", json_paths)

    def leaf(path: str, value: Any, tp: Any) -> Any:
        return json.loads(value) if path in json_paths and isinstance(value, str) else value

    return [_unwalk(r, model, "", leaf, json_paths) for r in rows]


def _json_paths(field: Any, path: str, out: set[str]) -> None:
    """Collect the paths of fields written as JSON text (their metadata says so)."""
    import pyarrow as pa

    if field.metadata and field.metadata.get(ENCODING) == b"json":
        out.add(path)
    elif pa.types.is_struct(field.type):
        for child in field.type:
            _json_paths(child, f"{path}.{child.name}", out)
    elif pa.types.is_list(field.type) and field.metadata and field.metadata.get(_KIND) == b"map":
        _json_paths(field.type.value_type.field("value"), path + "{}", out)
    elif pa.types.is_list(field.type):
        _json_paths(field.type.value_field, path + "[]", out)


def _unwalk(value: Any, tp: Any, path: str, leaf: Callable[[str, Any, Any], Any], json_paths: set[str]) -> Any:
    if value is None:
        return None
    if path in json_paths:
        return leaf(path, value, tp)
    kind, arg = _node(tp)
    if kind == "model" or kind == "variants":
        model = arg if kind == "model" else _variant_for(arg, value)
        return {n: _unwalk(value.get(n), f.annotation, f"{path}.{n}", leaf, json_paths) for n, f in model.model_fields.items()}
    if kind == "list":
        return [_unwalk(v, arg, f"{path}[]", leaf, json_paths) for v in value]
    if kind == "map":
        return {kv["key"]: _unwalk(kv["value"], arg, f"{path}{{}}", leaf, json_paths) for kv in value}
    return leaf(path, value, tp)


def schema_text() -> str:
    """The nested Parquet columns of an episode file, one top-level column per line (for the docs)."""
    from toolgym.rollouts.episode import Episode

    return "\n".join(f"{f.name}: {f.type}" for f in arrow_type(Episode))


if __name__ == "__main__":
    print(schema_text())
