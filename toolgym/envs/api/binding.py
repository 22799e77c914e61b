"""State bindings: where a domain object keeps its state, so that ``ApiEnv`` can hash,
snapshot and restore it without knowing the domain.

Two places are supported: one attribute holding a pydantic model (``ModelBinding``, what
``Domain`` uses) and plain instance attributes of any class (``AttrBinding``, what
``from_class`` uses for classes that keep their data in ``self.books``, ``self.loans``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from toolgym.errors import ConfigError


class StateBinding(Protocol):
    """How to read and replace the state of a domain object."""

    def dump(self, obj: Any) -> Any:
        """The state as a value ``digest`` can hash and ``copy.deepcopy`` can copy."""
        ...

    def load(self, obj: Any, state: Any) -> None:
        """Put ``state`` (a value from ``dump``, already copied) back into ``obj``."""
        ...


class ModelBinding:
    """The state is one pydantic model in attribute ``attr`` (``Domain.state`` by default)."""

    def __init__(self, attr: str = "state"):
        self.attr = attr

    def dump(self, obj: Any) -> BaseModel:
        return getattr(obj, self.attr)

    def load(self, obj: Any, state: Any) -> None:
        setattr(obj, self.attr, state)


class AttrBinding:
    """The state is a set of instance attributes.

    Args:
        names: The attributes that hold state. None: every public attribute in the
            instance's ``__dict__`` (names not starting with ``_``), read at each dump.
    """

    def __init__(self, names: Sequence[str] | None = None):
        self.names = tuple(names) if names is not None else None

    def dump(self, obj: Any) -> dict[str, Any]:
        if self.names is None:
            return {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_")}
        missing = [n for n in self.names if not hasattr(obj, n)]
        if missing:
            raise ConfigError(
                f"{type(obj).__name__} has no attribute {missing[0]!r}, declared as state; "
                f"set it in __init__ or remove it from state_attrs"
            )
        return {n: getattr(obj, n) for n in self.names}

    def load(self, obj: Any, state: Any) -> None:
        if self.names is None:
            # Attributes created after the snapshot did not exist then: drop them.
            for stale in [k for k in vars(obj) if not k.startswith("_") and k not in state]:
                delattr(obj, stale)
        for name, value in state.items():
            setattr(obj, name, value)
