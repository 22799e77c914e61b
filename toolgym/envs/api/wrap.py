"""Wrap an existing class as an API domain without editing it.

Its public methods become tools (``make_tool`` reads their type hints and docstrings); its
state lives in instance attributes. Hashing and snapshotting are separate choices:

* the digest covers ``state_attrs`` (default: every public attribute), encoded canonically
  (object trees, dataclasses, ``__slots__``, sets, enums, datetimes, ``Decimal``, mixed-type
  dict keys and cycles all have a form; see ``toolgym.envs.canonical``), or whatever a
  ``state_fn(instance)`` returns where no generic encoding fits;
* a snapshot is the whole instance: every attribute, private ones included (a cursor into
  the instance's own tree, a ``random.Random``), deep-copied together so shared references
  stay shared, and restored in place so the tools keep acting on the live object.

>>> class Notes:
...     def __init__(self):
...         self.notes: dict[str, str] = {}
...     def write(self, key: str, text: str) -> str:
...         '''Save a note.
...
...         Args:
...             key: Note name.
...             text: Note body.
...         '''
...         self.notes[key] = text
...         return "saved"
>>> NotesEnv = from_class(Notes)
>>> [t.name for t in NotesEnv(tasks=[Task(id="t", instruction="hi")]).reset(seed=0)[0].tools]
['write']
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from toolgym.envs.api.binding import AttrBinding
from toolgym.envs.api.env import ApiEnv
from toolgym.envs.tools import Tool, make_tool
from toolgym.envs.types import Task
from toolgym.errors import ConfigError, ToolDefinitionError, did_you_mean


class ToolHolder:
    """Carries a wrapped instance; its generated subclass holds one ``Tool`` per wrapped method."""

    def __init__(self, target: Any):
        self.target = target


class WrappedApiEnv(ApiEnv):
    """Base of the classes ``from_class`` builds (one per wrapped class)."""

    target_class: ClassVar[type]
    holder_class: ClassVar[type[ToolHolder]]
    factory: ClassVar[Callable[[dict[str, Any]], Any]]
    state_fn: ClassVar[Callable[[Any], Any] | None] = None

    def make_domain(self, task: Task) -> Any:
        return type(self).factory(task.initial_state)

    def tool_owners(self) -> list[Any]:
        return [type(self).holder_class(self.api)]

    def world_state(self) -> Any:
        state_fn = type(self).state_fn
        return state_fn(self.api) if state_fn is not None else super().world_state()

    def save_world(self) -> Any:
        """The whole instance, deep-copied at once (shared references and RNG states kept)."""
        try:
            return copy.deepcopy(self.api)
        except Exception as exc:
            raise ConfigError(
                f"cannot snapshot {type(self.api).__name__}: copying it failed ({type(exc).__name__}: {exc}); "
                "keep uncopyable things (locks, files, sockets) out of its attributes or give the class a __deepcopy__"
            ) from None

    def load_saved_world(self, saved: Any) -> None:
        """Put a saved instance's attributes into the live one (its tools stay bound to it)."""
        # References to the saved instance inside its own attributes must point at the live one.
        state = copy.deepcopy(_instance_attrs(saved), {id(saved): self.api})
        live = self.api
        if hasattr(live, "__dict__"):
            live.__dict__.clear()
        for name, value in state.items():
            object.__setattr__(live, name, value)


def from_class(
    target: type,
    *,
    state_attrs: Sequence[str] | None = None,
    factory: Callable[[dict[str, Any]], Any] | None = None,
    methods: Sequence[str] | None = None,
    system_prompt: str | None = None,
    task_generator: Callable[[int], Task] | None = None,
    state_fn: Callable[[Any], Any] | None = None,
    base: type[ApiEnv] = ApiEnv,
) -> type[ApiEnv]:
    """An ``ApiEnv`` subclass whose tools are ``target``'s methods and whose state is its attributes.

    Args:
        target: The class to wrap; it is not modified.
        state_attrs: Attributes the digest covers. None: every public attribute of the
            instance's ``__dict__``. Snapshots always cover the whole instance.
        factory: ``initial_state -> instance``. Default: ``target()``, then each key of the
            task's ``initial_state`` is set as an attribute (a deep copy).
        methods: The methods to expose. Default: every public method.
        system_prompt: Default system prompt of the environment.
        task_generator: ``seed -> Task`` for resets without a task.
        state_fn: ``instance -> data`` to hash instead of ``state_attrs`` (for state with no
            generic canonical form).
        base: The ``ApiEnv`` class to derive from.

    Raises:
        ToolDefinitionError: a method has an untyped parameter or no docstring (named).
        ConfigError: ``methods`` names something that is not a public method.
    """
    tools = {t.name: t for t in (_method_tool(target, name) for name in _method_names(target, methods))}
    holder = type(f"{target.__name__}Tools", (ToolHolder,), tools)
    attrs: dict[str, Any] = {
        "target_class": target,
        "holder_class": holder,
        "factory": staticmethod(factory or functools.partial(_default_factory, target, state_attrs)),
        "binding": AttrBinding(state_attrs),
        "task_generator": staticmethod(task_generator) if task_generator is not None else None,
        "state_fn": staticmethod(state_fn) if state_fn is not None else None,
        "__doc__": f"{target.__name__} wrapped as a simulated API environment.",
        "__module__": target.__module__,
    }
    if system_prompt is not None:
        attrs["system_prompt"] = system_prompt
    bases = (WrappedApiEnv,) if base is ApiEnv else (WrappedApiEnv, base)
    return type(f"{target.__name__}Env", bases, attrs)


def _method_names(target: type, methods: Sequence[str] | None) -> list[str]:
    public = [
        name
        for name in dir(target)
        if not name.startswith("_") and inspect.isfunction(inspect.getattr_static(target, name))
    ]
    if methods is None:
        if not public:
            raise ConfigError(f"{target.__name__} has no public methods to turn into tools")
        return public
    for name in methods:
        if name not in public:
            raise ConfigError(
                f"{target.__name__} has no public method {name!r}.{did_you_mean(name, public)} "
                f"Public methods: {', '.join(public) or 'none'}."
            )
    return list(methods)


def _method_tool(target: type, name: str) -> Tool:
    fn = inspect.getattr_static(target, name)
    positional_only = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_ONLY]
    if positional_only[1:] or (positional_only and positional_only[0] != "self"):
        raise ToolDefinitionError(
            f"tool {target.__name__}.{name}: parameter {positional_only[-1]!r} is positional-only; "
            "tools are called with keyword arguments"
        )
    try:
        spec_tool = make_tool(fn)
    except ToolDefinitionError as exc:
        raise ToolDefinitionError(f"{exc} (or leave {name!r} out with methods=[...])") from None
    return dataclasses.replace(spec_tool, fn=_delegate(name, spec_tool.is_async), is_method=True)


def _delegate(name: str, is_async: bool) -> Callable[..., Any]:
    """A function ``(holder, **kwargs)`` that calls ``holder.target.<name>`` and makes the result JSON-able."""
    if is_async:

        async def call_async(holder: ToolHolder, **kwargs: Any) -> Any:
            return jsonable(await getattr(holder.target, name)(**kwargs))

        return call_async

    def call(holder: ToolHolder, **kwargs: Any) -> Any:
        return jsonable(getattr(holder.target, name)(**kwargs))

    return call


def _default_factory(target: type, state_attrs: Sequence[str] | None, initial_state: dict[str, Any]) -> Any:
    try:
        obj = target()
    except TypeError as exc:
        raise ConfigError(
            f"cannot build {target.__name__}() without arguments ({exc}); pass "
            f"factory=lambda state: {target.__name__}(...) to from_class"
        ) from None
    for key, value in initial_state.items():
        if state_attrs is not None and key not in state_attrs:
            raise ConfigError(
                f"initial_state key {key!r} is not a state attribute of {target.__name__}.{did_you_mean(key, state_attrs)} "
                f"State attributes: {', '.join(state_attrs)}."
            )
        setattr(obj, key, copy.deepcopy(value))
    return obj


def _instance_attrs(obj: Any) -> dict[str, Any]:
    """Every attribute of an instance: its ``__dict__`` and any ``__slots__`` along the MRO."""
    attrs = dict(getattr(obj, "__dict__", {}))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                attrs[slot] = getattr(obj, slot)
    return attrs


def jsonable(value: Any) -> Any:
    """``value`` as fresh JSON-like data (dataclasses, sets, tuples and enums converted).

    Fresh containers also keep a tool result from aliasing the live state it was read from.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return value  # left as is: ToolBox reports it as an unserializable_output error
