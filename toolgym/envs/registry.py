"""Environment registry: ``register`` a name once, ``make`` it anywhere (also via gymnasium).

>>> import toolgym
>>> env = toolgym.make("toolgym/unitconv-v0")
>>> toolgym.make("toolgym/unitcnv-v0")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
toolgym.errors.UnknownEnvError: no environment 'toolgym/unitcnv-v0' is registered. Did you mean 'toolgym/unitconv-v0'...
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from toolgym.errors import ConfigError, UnknownEnvError, did_you_mean

_ID = re.compile(r"^(?:[\w.\-]+/)?[\w.\-]+-v\d+$")


@dataclass(frozen=True)
class EnvSpec:
    """How to build one registered environment."""

    id: str
    entry_point: str | Callable[..., Any]
    """``"package.module:ClassName"`` (imported lazily) or a callable returning the env."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)


_REGISTRY: dict[str, EnvSpec] = {}


def register(id: str, entry_point: str | Callable[..., Any], *, description: str = "", **kwargs: Any) -> EnvSpec:
    """Register an environment under ``id`` (form ``namespace/name-vN``).

    Args:
        id: The name users pass to ``make``.
        entry_point: ``"module:Class"`` or a callable that returns the environment.
        description: One line shown by ``toolgym envs``.
        **kwargs: Default keyword arguments for the constructor.
    """
    if not _ID.match(id):
        raise ConfigError(f"environment id {id!r} must look like 'namespace/name-v0' (letters, digits, _ . -; a version suffix)")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ConfigError(f"entry_point {entry_point!r} must be 'package.module:ClassName'")
    spec = EnvSpec(id=id, entry_point=entry_point, kwargs=dict(kwargs), description=description)
    _REGISTRY[id] = spec
    gym_id_taken = id in gymnasium.registry
    if gym_id_taken:
        del gymnasium.registry[id]
    gymnasium.register(id=id, entry_point=_gym_entry(id), disable_env_checker=True, order_enforce=False)
    return spec


def _gym_entry(env_id: str) -> Callable[..., Any]:
    def build(**kwargs: Any) -> Any:
        return make(env_id, **kwargs)

    return build


def make(id: str, **kwargs: Any) -> Any:
    """Build the environment registered as ``id``; keyword arguments override its defaults."""
    spec = _REGISTRY.get(id)
    if spec is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownEnvError(f"no environment {id!r} is registered.{did_you_mean(id, _REGISTRY)} Registered: {known}.")
    factory = spec.load()
    env = factory(**{**spec.kwargs, **kwargs})
    env.spec_id = id
    return env


def unregister(id: str) -> None:
    """Remove ``id`` from toolgym's and gymnasium's registries (tests, notebooks)."""
    if _REGISTRY.pop(id, None) is None:
        raise UnknownEnvError(f"no environment {id!r} is registered.{did_you_mean(id, _REGISTRY)}")
    gymnasium.registry.pop(id, None)


def registered() -> dict[str, EnvSpec]:
    """All registered environments by id (a copy)."""
    return dict(_REGISTRY)
