"""Copy-on-write worlds: restore in microseconds, hash only what changed.

A ``StateModel`` world keeps its entities in dict fields (``orders``, ``users``, ...). A copy of
such a world (``copy.deepcopy``, which ``snapshot`` and ``restore`` use) does not copy those
entities: each dict field becomes a ``CowDict`` that shares them with the world it was copied
from, and copies an entity (a structural clone, no re-validation) the first time code that
may write takes it out of the dict. Episodes touch a few entities of a world, so a restore
builds a handful of objects instead of hundreds, which is also what the cyclic collector no
longer has to traverse.

Invariants that make the sharing safe:

- A shared ("frozen") entity is never handed out: ``[]``, ``get``, ``values``, ``items``,
  ``pop``, ``setdefault``, iteration-based copies (``dict(d)``, ``{**d}``, ``d | e``) all go
  through ``__getitem__``, which swaps in a private copy first.
- Which entries are frozen is decided by identity: an entry is frozen only while it *is* the
  object recorded when the dict was built from a snapshot. Anything put in by any other path
  counts as private, so a copy of the world copies it.
- Tools declared ``@tool(read_only=True)`` on a ``Domain`` (and code inside ``reading()``)
  are handed the shared entities themselves: a read copies nothing. That is the write
  barrier (``toolgym.envs.api.barrier``): an entity is copied only when code that may write
  takes it out.
- A restore does not even copy the dicts' tables: an untouched dict is shared by the
  snapshot and the worlds restored from it (marked ``_shared``, never changed again), and a
  world forks its own the first time code that may write reads that field.
- Frozen entities keep their canonical JSON text in a cache shared by every world copied
  from the same snapshot: ``state_digest`` re-encodes only the private (touched) entities and
  splices the rest. The text is byte-identical to ``toolgym.envs.canonical.digest`` of the
  world; whatever could differ (tags, non-finite floats, custom serializers, subclasses)
  takes the plain path instead.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import operator
import typing
from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any

from pydantic import BaseModel

from toolgym.envs.api.barrier import READING, reading

_MISSING: Any = object()
_WHOLE: Any = object()  # key of a lineage's whole-dict text in its text cache
_WHOLE_BLOB: Any = object()  # ... and that text in UTF-8
_LAYOUT: Any = object()  # key of its sorted keys and members (False: cannot be spliced)


_ATOMS = frozenset({str, int, float, bool, type(None)})


def _clone(value: Any) -> Any:
    """A deep copy that shares nothing mutable with ``value``, built without validation.

    State models, lists and dicts are rebuilt structurally (a validated round trip costs
    5-10x more and gives the same values: the original was valid and is copied as it is);
    anything else goes through ``copy.deepcopy``.
    """
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is list:
        return [v if type(v) in _ATOMS else _clone(v) for v in value]
    if kind is dict:
        return {k: v if type(v) in _ATOMS else _clone(v) for k, v in value.items()}
    if isinstance(value, BaseModel) and getattr(kind.__deepcopy__, "__func__", kind.__deepcopy__) in STRUCTURAL_COPIES:
        return _clone_model(value)
    return copy.deepcopy(value)


STRUCTURAL_COPIES: set[Any] = {BaseModel.__deepcopy__}
"""``__deepcopy__`` implementations that only copy a model's fields (``StateModel`` adds its
own): models using one of them are cloned field by field; any other goes to ``copy.deepcopy``."""


def _clone_model(model: BaseModel) -> Any:
    state = {k: v if type(v) in _ATOMS else _clone(v) for k, v in model.__dict__.items()}
    return _new_model(type(model), state, model)


def _private_copy(entity: Any) -> Any:
    """A copy of one entity that no other world shares."""
    return _clone(entity)


class CowDict(dict[str, Any]):
    """A dict of entities shared with a snapshot until first taken out (see the module doc).

    Behaves as a plain ``dict`` for every read and write; only the moment an entity is copied
    differs. Pickles as a plain dict of private copies.
    """

    __slots__ = ("_dirty", "_frozen", "_shared", "_texts")

    def __init__(self, frozen: dict[Any, Any], texts: dict[Any, Any]):
        super().__init__(frozen)
        self._frozen = frozen  # key -> the shared entity (never mutated; shared by the lineage)
        self._texts = texts  # key -> '"key":<canonical JSON of _frozen[key]>' (filled lazily)
        self._shared = False
        """Held by several worlds (a snapshot and its restores): never changed again; a world
        forks it the first time code that may write reaches it (see ``fork_world``)."""
        self._dirty = False
        """Some entry may differ from the snapshot's: set by every method that changes the dict
        (a copy on take-out included), so the digest and forks of an untouched dict are O(1)."""

    # ------------------------------------------------------------------ copy on take-out

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if value is self._frozen.get(key, _MISSING) and not READING.depth:
            value = _private_copy(value)
            dict.__setitem__(self, key, value)
            self._dirty = True
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._dirty = True
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._dirty = True
        dict.__delitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._dirty = True
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        self._dirty = True
        dict.clear(self)

    def __ior__(self, other: Any) -> Any:
        self._dirty = True
        return dict.__ior__(self, other)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if dict.__contains__(self, key) else default

    def values(self) -> Any:
        # Lazy views: a search that stops at the first match copies only what it looked at.
        return ValuesView(self)

    def items(self) -> Any:
        return ItemsView(self)

    def pop(self, key: Any, *default: Any) -> Any:
        if dict.__contains__(self, key):
            self[key]
            self._dirty = True
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        if dict.__len__(self):
            self[next(reversed(dict.keys(self)))]
            self._dirty = True
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self[key]
        self._dirty = True
        dict.__setitem__(self, key, default)
        return default

    def __iter__(self) -> Iterator[Any]:
        # Overriding iteration turns off CPython's dict-merge fast path, so dict(d), {**d}
        # and e.update(d) read entries through __getitem__ (private copies), never the frozen ones.
        return iter(dict.keys(self))

    def copy(self) -> dict[Any, Any]:
        return dict(self.items())

    def __or__(self, other: Any) -> Any:
        return dict(self.items()) | other

    def __ror__(self, other: Any) -> Any:
        return other | dict(self.items())

    def __reduce__(self) -> Any:
        with reading():  # pickling only reads: hand it the shared entities, copy nothing
            return (dict, (dict(self.items()),))

    def __deepcopy__(self, memo: dict[int, Any]) -> CowDict:
        return self.fork()

    # ------------------------------------------------------------------ forking

    def fork(self) -> CowDict:
        """A new dict that shares every entry with this one; touched entries are copied now.

        Entries still frozen here are shared again (they are never mutated); private ones
        may change later, so the fork gets its own copy, and the two dicts share it frozen.
        An untouched dict (a snapshot's) hands its frozen entries and their cached text to
        the fork as they are, so every restore of one snapshot reuses the same text.
        """
        frozen_before = self._frozen
        if self.untouched():
            return CowDict(frozen_before, self._texts)
        frozen, texts, old_texts = {}, {}, self._texts
        for key, value in dict.items(self):
            if value is frozen_before.get(key, _MISSING):
                frozen[key] = value
                if key in old_texts:
                    texts[key] = old_texts[key]
            else:
                frozen[key] = _private_copy(value)
        return CowDict(frozen, texts)

    @classmethod
    def of(cls, entries: dict[Any, Any]) -> CowDict:
        """A copy-on-write copy of a plain dict of entities (each copied once, now)."""
        return cls({k: _private_copy(v) for k, v in entries.items()}, {})

    # ------------------------------------------------------------------ hashing

    def canonical_text(self, entity_type: type[BaseModel]) -> str | None:
        """Canonical JSON of this dict as the world's serializer writes it, or None.

        None when a key is not text or an entry is not exactly ``entity_type`` (a subclass
        serializes differently nested than on its own). While the snapshot's keys are all
        still here, in their order (entries replaced or added, none removed), only the
        replaced and added entries are encoded; the others are spliced from the lineage's
        cached, sorted text.
        """
        frozen = self._frozen
        if not self._dirty and dict.__len__(self) == len(frozen) and (whole := self._texts.get(_WHOLE)) is not None:
            return whole  # untouched: one cached string for the whole dict
        if dict.__len__(self) >= len(frozen) and all(map(operator.is_, dict.keys(self), frozen.keys())):
            layout = self._layout(entity_type)
            if layout is not None:
                return self._spliced(layout, entity_type)
        parts = []
        for key in sorted(dict.keys(self)):
            if type(key) is not str:
                return None
            member = self._member(key, entity_type)
            if member is None:
                return None
            parts.append(member)
        return "{" + ",".join(parts) + "}"

    def canonical_blob(self, entity_type: type[BaseModel]) -> bytes | None:
        """``canonical_text`` in UTF-8 (cached while untouched), or None where that is None or
        holds something the canonical encoder would tag."""
        untouched = self.untouched()
        if untouched and (blob := self._texts.get(_WHOLE_BLOB)) is not None:
            return typing.cast(bytes, blob)
        text = self.canonical_text(entity_type)
        blob = None if text is None else _blob(text)
        if untouched and blob is not None:
            self._texts[_WHOLE_BLOB] = blob
        return blob

    def _member(self, key: str, entity_type: type[BaseModel]) -> str | None:
        """``'"key":{...}'`` as ``json.dumps`` writes a member of a sorted dict (cached while shared)."""
        value: Any = dict.__getitem__(self, key)
        if type(value) is not entity_type:
            return None
        shared = value is self._frozen.get(key, _MISSING)
        member = self._texts.get(key) if shared else None
        if member is None:
            member = f"{_json(key)}:{_json(value.model_dump(mode='json'))}"
            if shared:
                self._texts[key] = member
        return member

    def _layout(self, entity_type: type[BaseModel]) -> tuple[list[str], list[str], dict[str, int]] | None:
        """The snapshot's keys sorted, their members and positions (built once per lineage)."""
        texts: dict[Any, Any] = self._texts  # entity keys -> member text; _LAYOUT -> this
        layout = texts.get(_LAYOUT)
        if layout is None:
            frozen = self._frozen
            keys: list[str] | None = sorted(frozen) if all(type(k) is str for k in frozen) else None
            members = [texts.get(k) or self._frozen_member(k, entity_type) for k in keys or ()]
            layout = texts[_LAYOUT] = (
                (keys, members, {k: i for i, k in enumerate(keys)}) if keys is not None and all(members) else False
            )
        return typing.cast("tuple[list[str], list[str], dict[str, int]] | None", layout or None)

    def _frozen_member(self, key: str, entity_type: type[BaseModel]) -> str:
        value = self._frozen[key]
        if type(value) is not entity_type:
            return ""
        member = self._texts[key] = f"{_json(key)}:{_json(value.model_dump(mode='json'))}"
        return member

    def _spliced(self, layout: tuple[list[str], list[str], dict[str, int]], entity_type: type[BaseModel]) -> str | None:
        keys, members, where = layout
        frozen, size = self._frozen, dict.__len__(self)
        changed = list(itertools.compress(dict.keys(self), map(operator.is_not, dict.values(self), frozen.values())))
        if not changed and size == len(frozen):  # untouched: one cached string for the whole dict
            whole = self._texts.get(_WHOLE)
            if whole is None:
                whole = self._texts[_WHOLE] = "{" + ",".join(members) + "}"
            return whole
        parts = members.copy()
        for key in changed:
            member = self._member(key, entity_type)
            if member is None:
                return None
            parts[where[key]] = member
        if size > len(frozen):  # entities added since the snapshot go in at their sorted places
            keys = keys.copy()
            for key in itertools.islice(dict.keys(self), len(frozen), None):
                added = self._member(key, entity_type) if type(key) is str else None
                if added is None:
                    return None
                at = bisect.bisect_left(keys, key)
                keys.insert(at, key)
                parts.insert(at, added)
        return "{" + ",".join(parts) + "}"

    def untouched(self) -> bool:
        """Every entry is still the shared one it was built with: nothing changed the dict since
        (its length is checked too, against changes made past its methods)."""
        return not self._dirty and dict.__len__(self) == len(self._frozen)


# The options of toolgym.envs.canonical.dumps' plain path (json.dumps builds this same encoder
# per call), so spliced text is byte-identical to it.
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _new_model(cls: type[BaseModel], state: dict[str, Any], like: BaseModel) -> Any:
    """An instance of ``cls`` holding ``state``, with the bookkeeping slots of ``like`` copied."""
    new = cls.__new__(cls)
    # The low-level setattr pydantic's own __copy__ uses: no validation, no hooks.
    object.__setattr__(new, "__dict__", state)
    extra, private = like.__pydantic_extra__, getattr(like, "__pydantic_private__", None)
    fields_set = like.__pydantic_fields_set__
    if extra is not None or not fields_set.issuperset(cls.model_fields):
        fields_set = set(fields_set)  # an assignment may add a name to it: each copy gets its own
    # else shared by the copies: pydantic only adds field names to it, which it already holds
    # (a set fewer per entity copy for the cyclic collector to traverse).
    object.__setattr__(new, "__pydantic_fields_set__", fields_set)
    object.__setattr__(new, "__pydantic_extra__", None if extra is None else copy.deepcopy(extra))
    object.__setattr__(new, "__pydantic_private__", None if private is None else copy.deepcopy(private))
    return new


def _blob(text: str) -> bytes | None:
    """``text`` in UTF-8, or None where the canonical encoder would wrap or tag something."""
    return None if '{"$' in text else text.encode("utf-8", "surrogatepass")
