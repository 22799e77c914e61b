"""The world of an environment: what its tools change, and the three things a fork needs.

``ToolEnv.setup`` puts the world in ``self.world``. Plain JSON-like data (dicts, lists,
scalars) needs nothing more: the env copies it for snapshots and rollbacks and hashes it for
``state_digest``. Any other world subclasses ``WorldState`` and implements its three methods;
the env then needs no world hooks at all. (Subclassing, not just having the methods, is the
opt-in: a wrapped user class may well have a ``load`` of its own.)

>>> class Counter(WorldState):
...     def __init__(self):
...         self.n = 0
...     def save(self):
...         return self.n
...     def load(self, saved):
...         self.n = saved
...     def digest(self):
...         return str(self.n)
>>> as_world_state(Counter()) is not None, as_world_state({"n": 0})
(True, None)
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

__all__ = ["WorldState", "as_world_state", "copy_world"]


class WorldState(Protocol):
    """A world that saves, loads and hashes itself (snapshots, rollbacks, digests use these).

    Subclass it explicitly: ``ToolEnv`` uses a world's own methods only when its class does.
    """

    def save(self) -> Any:
        """An independent copy of everything the tools can change."""
        ...

    def load(self, saved: Any) -> None:
        """Put back a ``save`` copy; the copy itself stays reusable (siblings restore it too)."""
        ...

    def digest(self) -> str:
        """Canonical hash of the state: same state, same digest, on any machine."""
        ...


_IS_WORLD_STATE: dict[type, bool] = {}


def as_world_state(world: Any) -> WorldState | None:
    """``world`` if its class subclasses ``WorldState``, else None (decided once per class:
    this runs on every rollback and digest)."""
    kind = type(world)
    known = _IS_WORLD_STATE.get(kind)
    if known is None:
        known = _IS_WORLD_STATE[kind] = WorldState in kind.__mro__
    return world if known else None


class _NotJson(Exception):
    pass


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _clone_json(value: Any) -> Any:
    # Exact types: a dict or list subclass (defaultdict, a copy-on-write dict) keeps its class
    # through copy.deepcopy instead. Scalars are shared without a call (most values are).
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _clone_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _clone_json(v) for v in value]
    if kind in _SCALARS or isinstance(value, (str, int, float)):  # immutable (an enum member of str too)
        return value
    raise _NotJson


def copy_world(value: Any) -> Any:
    """A deep copy; plain JSON-like data is copied directly, 3-4x faster than ``copy.deepcopy``
    (this runs before every call of an atomic env)."""
    try:
        return _clone_json(value)
    except (_NotJson, RecursionError):
        return copy.deepcopy(value)
