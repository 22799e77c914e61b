"""Rubrics of the shipped environments, one YAML file each, found by environment id.

>>> from toolgym.rubrics.catalog import rubric_for
>>> rubric_for("toolgym/unitconv-v0").name
'unitconv'
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from toolgym.errors import ConfigError, did_you_mean
from toolgym.rubrics.loading import load_rubric
from toolgym.rubrics.rubric import Rubric


@functools.cache
def catalog_rubrics() -> dict[str, Rubric]:
    """Every catalog rubric by environment id (loaded once)."""
    out: dict[str, Rubric] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            rubric = load_rubric(Path(str(entry)))
            for env_id in rubric.env_ids:
                if env_id in out:
                    raise ConfigError(f"{entry.name}: {env_id!r} already has the rubric {out[env_id].name!r}; one rubric per environment")
                out[env_id] = rubric
    return out


def rubric_for(env_id: str) -> Rubric:
    """The catalog rubric of ``env_id`` (a deep copy, safe to edit).

    Raises:
        ConfigError: no catalog rubric covers the environment.
    """
    rubrics = catalog_rubrics()
    if env_id not in rubrics:
        raise ConfigError(
            f"no catalog rubric for {env_id!r}.{did_you_mean(env_id, rubrics)} "
            f"Rubrics exist for: {', '.join(sorted(rubrics))}. Pass --rubric FILE to use your own."
        )
    return rubrics[env_id].model_copy(deep=True)


def catalog_rubric_by_name(name: str) -> Rubric:
    """The catalog rubric called ``name`` (for example "unitconv").

    Raises:
        ConfigError: no catalog rubric has that name.
    """
    by_name = {r.name: r for r in catalog_rubrics().values()}
    if name not in by_name:
        raise ConfigError(f"no catalog rubric named {name!r}.{did_you_mean(name, by_name)} Known: {', '.join(sorted(by_name))}.")
    return by_name[name].model_copy(deep=True)
