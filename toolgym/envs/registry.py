"""Environment registry: gymnasium's, with toolgym's naming rules and errors on top.

``register`` writes to ``gymnasium.registry`` (the single source of truth), so ``gymnasium.make``
and ``toolgym.make`` build the same thing and ``env.spec`` is set; registering an id again warns
as gymnasium does. toolgym keeps only a one-line description per id for ``toolgym envs``.

Environments from other packages come in two ways:

- an import: ``toolgym rollout mypkg.envs:MyEnv`` (a class or factory, registered on the fly)
  or ``--import mypkg.envs`` (a module that calls ``toolgym.register`` when imported);
- an installed package's entry point in the ``toolgym.envs`` group, naming a module or a
  no-argument function that registers its environments. Entry points load the first time an
  id is not found, so installing a package is enough.

>>> import toolgym
>>> env = toolgym.make("toolgym/unitconv-v0")
>>> env.spec.id
'toolgym/unitconv-v0'
>>> toolgym.make("toolgym/unitcnv-v0")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
toolgym.errors.UnknownEnvError: no environment 'toolgym/unitcnv-v0' is registered. Did you mean 'toolgym/unitconv-v0'...
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import gymnasium
from gymnasium.envs.registration import EnvSpec

from toolgym.errors import ConfigError, UnknownEnvError, did_you_mean

_ID = re.compile(r"^(?:[\w.\-]+/)?[\w.\-]+-v\d+$")
ENTRY_POINT_GROUP = "toolgym.envs"

_DESCRIPTIONS: dict[str, str] = {}
"""Description of each id registered through toolgym (which also marks it as a tool env)."""
_entry_points_loaded = False

__all__ = ["ENTRY_POINT_GROUP", "EnvSpec", "description", "import_env", "load_entry", "load_entry_points", "make", "register", "registered", "unregister"]


def register(id: str, entry_point: str | Callable[..., Any], *, description: str = "", **kwargs: Any) -> EnvSpec:
    """Register an environment under ``id`` (form ``namespace/name-vN``) in gymnasium's registry.

    Args:
        id: The name users pass to ``make``.
        entry_point: ``"module:Class"`` (imported lazily) or a callable that returns the environment.
        description: One line shown by ``toolgym envs``.
        **kwargs: Default keyword arguments for the constructor.
    """
    if not _ID.match(id):
        raise ConfigError(f"environment id {id!r} must look like 'namespace/name-v0' (letters, digits, _ . -; a version suffix)")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ConfigError(f"entry_point {entry_point!r} must be 'package.module:ClassName'")
    # The checker and order enforcement are toolgym's own (check_env, ToolEnv's step-before-reset error).
    gymnasium.register(id=id, entry_point=entry_point, kwargs=dict(kwargs), disable_env_checker=True, order_enforce=False)
    _DESCRIPTIONS[id] = description
    return gymnasium.spec(id)


def make(id: str, **kwargs: Any) -> Any:
    """Build the environment registered as ``id``; keyword arguments override its defaults.

    ``id`` may also be ``"module:Class"``: the class (or factory) is imported and registered under
    a derived id first.
    """
    if ":" in id and "/" not in id.partition(":")[0]:
        id = import_env(id)
    if id not in gymnasium.registry:
        load_entry_points()
    if id not in gymnasium.registry:
        known = registered()
        names = ", ".join(sorted(known)) or "none"
        raise UnknownEnvError(
            f"no environment {id!r} is registered.{did_you_mean(id, known)} Registered: {names}. "
            "A class of your own: pass 'package.module:ClassName', or import the module that registers it "
            "(toolgym rollout --import package.module)."
        )
    return gymnasium.make(id, **kwargs)


def unregister(id: str) -> None:
    """Remove ``id`` from the registry (tests, notebooks)."""
    if gymnasium.registry.pop(id, None) is None:
        raise UnknownEnvError(f"no environment {id!r} is registered.{did_you_mean(id, registered())}")
    _DESCRIPTIONS.pop(id, None)


def registered() -> dict[str, EnvSpec]:
    """Every tool environment registered through toolgym, by id."""
    return {env_id: gymnasium.registry[env_id] for env_id in _DESCRIPTIONS if env_id in gymnasium.registry}


def description(env_id: str) -> str:
    """The one-line description given at registration ('' when none)."""
    return _DESCRIPTIONS.get(env_id, "")


def load_entry(env_id: str) -> Callable[..., Any]:
    """The class or factory registered as ``env_id`` (imported if given as a string)."""
    from gymnasium.envs.registration import load_env_creator

    entry = gymnasium.spec(env_id).entry_point
    if entry is None:
        raise ConfigError(f"{env_id!r} is registered without an entry point")
    return entry if callable(entry) else load_env_creator(entry)


def import_env(target: str) -> str:
    """Import ``module`` or ``module:Name`` and return the env id to use.

    ``module`` must register its environments when imported; the first id it registered is
    returned. ``module:Name`` names a ToolEnv class or a factory; it is registered as
    ``module/Name-v0`` unless already registered.
    """
    module_name, _, attr = target.partition(":")
    before = set(_DESCRIPTIONS)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} ({exc}); is the package installed, or its folder on PYTHONPATH?"
        ) from None
    if not attr:
        added = [e for e in _DESCRIPTIONS if e not in before]
        if not added:
            raise ConfigError(f"importing {module_name!r} registered no environment: call toolgym.register(...) at its top level")
        return added[0]
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{module_name!r} has no class or function {attr!r}.{did_you_mean(attr, dir(module))}")
    env_id = f"{module_name.replace(':', '.')}/{attr}-v0"
    if env_id not in gymnasium.registry:
        register(env_id, factory, description=(factory.__doc__ or "").strip().split("\n")[0])
    return env_id


def load_entry_points() -> list[str]:
    """Load the ``toolgym.envs`` entry points of installed packages once; returns their names."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
        except Exception as exc:  # a broken plugin must not break every other environment
            import warnings

            warnings.warn(f"toolgym.envs entry point {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if callable(target):
            target()
        loaded.append(ep.name)
    return loaded
