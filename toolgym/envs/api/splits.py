"""Fixed evaluation splits: seeded tasks written once as JSONL and shipped with each domain.

Eval tasks come from ``task_generator(i, "eval")`` for ``i < EVAL_SIZE``, a separate RNG
stream from training (``"train"``), so the file can always be rebuilt and checked.

Regenerate every shipped split::

    python -m toolgym.envs.api.splits
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from toolgym.envs.taskfile import save_tasks
from toolgym.envs.types import Task
from toolgym.errors import ConfigError

EVAL_SIZE = 100
"""Tasks in each shipped eval split."""


def build_split(generate: Callable[..., Task], n: int = EVAL_SIZE, split: str = "eval") -> list[Task]:
    """Tasks ``generate(0, split) .. generate(n - 1, split)``."""
    return [generate(i, split) for i in range(n)]


def split_lines(tasks: Sequence[Task]) -> list[str]:
    """The JSONL lines ``save_tasks`` writes for ``tasks`` (to compare a file with a rebuild)."""
    return [t.model_dump_json(exclude_defaults=True) for t in tasks]


def write_eval_split(env_cls: type) -> Path:
    """Rebuild and write ``env_cls.eval_split`` from ``env_cls.task_generator``.

    Raises:
        ConfigError: the class has no generator or no eval split path.
    """
    generate = getattr(env_cls, "task_generator", None)
    path = getattr(env_cls, "eval_split", None)
    if generate is None or path is None:
        raise ConfigError(f"{env_cls.__name__} needs both task_generator and eval_split to write an eval split")
    return save_tasks(build_split(generate), path)


def shipped_env_classes() -> dict[str, type]:
    """Registered ``ApiEnv`` classes that ship an eval split, by environment id."""
    import toolgym  # noqa: F401  (registers the catalog)
    from toolgym.envs.api.env import ApiEnv
    from toolgym.envs.registry import load_entry, registered

    found = {}
    for env_id in sorted(registered()):
        factory = load_entry(env_id)
        if isinstance(factory, type) and issubclass(factory, ApiEnv) and factory.eval_split is not None:
            found[env_id] = factory
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Rewrite the eval splits of the given environment ids (default: all shipped)."""
    classes = shipped_env_classes()
    for env_id in list(argv or classes):
        if env_id not in classes:
            raise ConfigError(f"{env_id!r} ships no eval split; choose from {', '.join(classes)}")
        print(f"{env_id}: wrote {write_eval_split(classes[env_id])}")


if __name__ == "__main__":
    main(sys.argv[1:])
