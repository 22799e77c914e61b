"""``Domain``: a simulated API, a typed state plus the ``@tool`` methods that read and write it.

A domain knows nothing about conversations or budgets; ``ApiEnv`` hosts it. Tools raise
``NotFound`` for unknown ids and ``PolicyViolation`` when the domain's policy forbids an
action; ``ToolBox`` turns both into error observations the model can learn from.

>>> from toolgym.envs.tools import tool
>>> class Counter(StateModel):
...     value: int = 0
>>> class CounterApi(Domain[Counter]):
...     state_model = Counter
...     @tool
...     def bump(self, by: int) -> int:
...         '''Add to the counter.
...
...         Args:
...             by: Amount to add.
...         '''
...         self.state.value += by
...         return self.state.value
>>> api = CounterApi.from_initial_state({"value": 2})
>>> api.bump(3)
5
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from toolgym.envs.api.barrier import read_only_function, refuse_write
from toolgym.envs.api.cow import STRUCTURAL_COPIES
from toolgym.envs.api.forks import fork_world
from toolgym.envs.tools import PolicyViolation, Tool
from toolgym.errors import ConfigError

__all__ = ["Domain", "NotFound", "PolicyViolation", "StateModel"]


class StateModel(BaseModel):
    """Base class of domain states: typed, strict about unknown fields, fast to deep-copy.

    ``copy.deepcopy`` (which ``ToolEnv.snapshot`` and ``restore`` use) is copy-on-write for
    fields typed ``dict[str, SomeModel]`` (``toolgym.envs.api.cow``): the copy shares those
    entities and copies one, by a validated round trip, when it is first taken out. Other
    fields, and models without such dicts, are cloned field by field at once. A copy
    never shares anything a tool can change with the original.

    Read-only tools are handed shared entities (the write barrier, see ``toolgym.envs.api.cow``):
    assigning an attribute from inside one raises ``ReadOnlyWrite`` instead of reaching them.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> StateModel:
        return fork_world(self)  # type: ignore[return-value]  # fork_world returns the same StateModel subclass

    def __setattr__(self, name: str, value: Any) -> None:
        refuse_write(self, name)
        super().__setattr__(name, value)


STRUCTURAL_COPIES.add(StateModel.__deepcopy__)


class NotFound(LookupError):
    """An id the model sent does not exist (the message names it and how to find valid ones)."""


S = TypeVar("S", bound=BaseModel)


class Domain(Generic[S]):
    """A simulated API over a typed state. Subclasses set ``state_model`` and add ``@tool`` methods.

    Args:
        state: The world this API instance reads and writes (owned, mutated in place).
    """

    state_model: ClassVar[type[BaseModel]]
    """The pydantic model of the state (a ``StateModel`` subclass for fast snapshots)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Sync tools declared read_only=True run inside reading(): the entities they take
        # out of copy-on-write dicts are the shared ones, not copies (nothing to copy for a read).
        super().__init_subclass__(**kwargs)
        for name, attr in list(vars(cls).items()):
            if isinstance(attr, Tool) and attr.read_only and not attr.is_async:
                if not getattr(attr.fn, "__toolgym_read_only__", False):
                    setattr(cls, name, dataclasses.replace(attr, fn=read_only_function(attr.fn)))

    def __init__(self, state: S):
        self.state = state

    @classmethod
    def from_initial_state(cls, data: dict[str, Any]) -> Domain[S]:
        """A fresh domain whose state is validated from ``data`` (a task's ``initial_state``).

        Raises:
            ConfigError: ``data`` does not fit ``state_model``, naming the first bad fields.
        """
        model = getattr(cls, "state_model", None)
        if model is None:
            raise ConfigError(f"{cls.__name__} must set state_model = <a pydantic model of its state>")
        try:
            return cls(model.model_validate(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(state)'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:3]
            )
            raise ConfigError(f"initial_state does not fit {model.__name__}: {problems}") from None
