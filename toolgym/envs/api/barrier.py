"""The write barrier of simulated API worlds: reads share entities, only writes copy them.

A restored world shares its entities with the snapshot and its siblings (``toolgym.envs.api.cow``).
Code known to only read, the ``@tool(read_only=True)`` tools of a ``Domain`` and blocks inside
``reading()``, is handed those shared entities as they are: nothing is copied for a read. Any
other code that takes an entity out of a world's dict gets a private copy first, so whatever it
writes stays in its own world. Read-only code that assigns an attribute of a state model is
stopped with ``ReadOnlyWrite`` (in-place changes to a list or dict inside an entity cannot be
seen; ``tests/envs/api/test_write_barrier.py`` drives every shipped tool with generated calls
and checks that no write ever reaches a snapshot or a sibling).

>>> with reading():
...     READING.depth
1
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["READING", "ReadOnlyWrite", "read_only_function", "reading", "refuse_write"]


class _Reading(threading.local):
    """Per-thread state of the barrier (tool calls run on the event loop's thread or a worker)."""

    depth = 0
    """How many read-only regions this thread is inside (tool calls nest into helpers)."""


READING = _Reading()
"""``READING.depth`` > 0: this thread is in read-only code (copy-on-write dicts check it)."""

_F = TypeVar("_F", bound=Callable[..., Any])


class ReadOnlyWrite(RuntimeError):
    """Code declared read-only (a ``read_only=True`` tool, a ``reading()`` block) assigned state."""


class reading:  # lower case: used like a function, ``with reading():``
    """Inside the block, copy-on-write dicts hand out their shared entities without copying.

    For reads inside tools that also write (a search by email before writing the session):
    nothing read in the block may be changed, in it or after it. Assigning an attribute of
    a state model inside the block raises ``ReadOnlyWrite``.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        READING.depth += 1

    def __exit__(self, *exc: object) -> None:
        READING.depth -= 1


def read_only_function(fn: _F) -> _F:
    """``fn`` running inside ``reading()`` (how ``Domain`` runs its ``read_only=True`` tools)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        READING.depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            READING.depth -= 1

    run.__toolgym_read_only__ = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def refuse_write(model: BaseModel, name: str) -> None:
    """Raise ``ReadOnlyWrite`` when read-only code assigns ``model.name`` (shared state)."""
    if READING.depth:
        raise ReadOnlyWrite(
            f"read-only code assigned {type(model).__name__}.{name}: a tool declared "
            "@tool(read_only=True) (or code inside reading()) must not change the world; "
            "drop read_only=True from the tool, or move the write out of the reading() block"
        )
