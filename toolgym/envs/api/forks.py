"""Forks and digests of whole ``StateModel`` worlds built on copy-on-write dicts.

``fork_world`` is what ``copy.deepcopy`` of a ``StateModel`` (so snapshots and restores) does:
entity dicts (fields typed ``dict[str, SomeModel]``) are shared or forked as ``CowDict``s,
everything else is cloned. ``world_digest`` is ``toolgym.envs.canonical.digest`` of such a
world, splicing the cached text of untouched entities. See ``toolgym.envs.api.cow``.
"""

from __future__ import annotations

import hashlib
import types
import typing
from typing import Any

from pydantic import BaseModel

from toolgym.envs.api.barrier import READING
from toolgym.envs.api.cow import _ATOMS, CowDict, _blob, _clone, _clone_model, _json, _new_model

__all__ = ["entity_fields", "fork_world", "world_digest"]


def entity_fields(model: type[BaseModel]) -> dict[str, type]:
    """Fields of ``model`` annotated ``dict[str, E]`` with ``E`` a pydantic model: name -> E.

    These become ``CowDict``s in copies. Empty when the model serializes itself in a custom
    way (then a spliced digest could differ from the canonical one).
    """
    cached = _ENTITY_FIELDS.get(model)
    if cached is None:
        cached = _ENTITY_FIELDS[model] = _find_entity_fields(model)
        for name in cached:  # worlds share these dicts until code that may write reaches them
            setattr(model, name, _ForkingField(name))
    return cached


class _ForkingField:
    """The attribute ``name`` of a world: forks a dict it shares with other worlds on first
    access (code in ``reading()`` gets the shared dict: it neither copies nor writes).

    Invisible on the class itself (``AttributeError``), so pydantic treats the field as a
    plain one: a subclass may declare it again, and assignments write the field as usual.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, world: Any, owner: Any = None) -> Any:
        if world is None:
            raise AttributeError(self.name)
        value = world.__dict__[self.name]
        if type(value) is CowDict and value._shared and not READING.depth:
            value = world.__dict__[self.name] = value.fork()
        return value

    def __set__(self, world: Any, value: Any) -> None:
        world.__dict__[self.name] = value
        world.__pydantic_fields_set__.add(self.name)


_ENTITY_FIELDS: dict[type, dict[str, type]] = {}


def _plain_serializer(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    return not (
        decorators.model_serializers
        or decorators.field_serializers
        or decorators.computed_fields
        or model.model_config.get("serialize_by_alias")
        or any(f.exclude for f in model.model_fields.values())
    )


def _find_entity_fields(model: type[BaseModel]) -> dict[str, type]:
    if not _plain_serializer(model):
        return {}
    found = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) is not dict or isinstance(annotation, types.UnionType):
            continue
        key, value = typing.get_args(annotation)
        if key is str and isinstance(value, type) and issubclass(value, BaseModel) and _plain_serializer(value):
            found[name] = value
    return found


def fork_world(model: BaseModel) -> BaseModel:
    """A copy of a world whose entity dicts are copy-on-write (see the module doc).

    A model without entity dicts is cloned field by field.
    """
    cls = type(model)
    fields = entity_fields(cls)
    state = dict(model.__dict__)
    if not any(type(state.get(name)) in (dict, CowDict) for name in fields):
        return _clone_model(model)
    for name, value in state.items():
        kind = type(value)
        if kind in _ATOMS:
            continue
        if kind is CowDict and name in fields:
            # An untouched dict is shared as it is (no copy of its table at all); each world
            # holding it forks it when code that may write first reads the field.
            if value.untouched():
                value._shared = True
            else:
                value = value.fork()
            state[name] = value
        elif kind is dict and name in fields:
            state[name] = CowDict.of(value)
        else:
            state[name] = _clone(value)  # session, lists...
    return _new_model(cls, state, model)


def _member_key(name: str) -> bytes:
    """``'"name":'`` as the canonical encoder writes a member's key, in UTF-8 (field names: cached)."""
    blob = _MEMBER_KEYS.get(name)
    if blob is None:
        blob = (_json(name) + ":").encode("utf-8", "surrogatepass")
        if len(_MEMBER_KEYS) < 4096:  # field names are few; a bound keeps odd worlds from growing it
            _MEMBER_KEYS[name] = blob
    return blob


_MEMBER_KEYS: dict[str, bytes] = {}


def world_digest(model: BaseModel) -> str | None:
    """``toolgym.envs.canonical.digest(model)``, reusing cached text of untouched entities.

    None when this world cannot be spliced exactly (no copy-on-write fields, a custom
    serializer, text that the canonical encoder would tag): the caller hashes it plainly.
    The pieces are hashed one after another, never joined: UTF-8 of a concatenation is the
    concatenation of the pieces' UTF-8, and a tag (``{"$``) cannot straddle two pieces
    (each starts after ``"name":`` and field names never start with ``$``).
    """
    fields = entity_fields(type(model))
    cows = {name: v for name in fields if type(v := model.__dict__.get(name)) is CowDict}
    if not cows:
        return None
    try:  # non-finite floats or odd values: the canonical encoder decides how to say them
        pieces: dict[str, bytes] = {}
        for name, value in cows.items():
            piece = value.canonical_blob(fields[name])
            if piece is None:
                return None
            pieces[name] = piece
        for name, data in model.model_dump(mode="json", exclude=set(cows)).items():
            piece = _blob(_json(data))
            if piece is None or not isinstance(name, str) or name.startswith("$"):
                return None
            pieces[name] = piece
    except (TypeError, ValueError):
        return None
    hasher = hashlib.sha256()
    separator = b"{"
    for name in sorted(pieces):
        hasher.update(separator)
        hasher.update(_member_key(name))
        hasher.update(pieces[name])
        separator = b","
    hasher.update(b"}" if pieces else b"{}")
    return hasher.hexdigest()[:32]
