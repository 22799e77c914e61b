"""``ApiEnv``: a ``ToolEnv`` hosting a simulated API domain.

The domain object (a ``Domain`` with a typed state, or any class wrapped by ``from_class``)
is built fresh from ``task.initial_state`` at every reset; its tools are the environment's
tools; its state is what ``state_digest`` hashes and ``snapshot``/``restore`` copy.

>>> import toolgym
>>> env = toolgym.make("toolgym/retail-v0")
>>> obs, info = env.reset(seed=0)
>>> len(env.state_digest())
32
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from toolgym.envs.api.binding import ModelBinding, StateBinding
from toolgym.envs.api.domain import Domain, StateModel
from toolgym.envs.api.forks import fork_world, world_digest
from toolgym.envs.env import ToolEnv
from toolgym.envs.taskfile import load_tasks
from toolgym.envs.types import Task
from toolgym.envs.world import as_world_state
from toolgym.errors import ConfigError


class ApiEnv(ToolEnv):
    """A simulated, stateful API environment.

    Subclasses set ``domain`` (a ``Domain`` subclass), usually ``system_prompt`` (with the
    domain's policy document) and ``task_generator`` (seeded, unlimited tasks).

    Keyword arguments are those of ``ToolEnv`` (``tool_format``, ``tasks``, ``user``, ...).
    Without ``tasks``, ``reset`` draws a new task from ``task_generator`` with the seeded RNG.
    """

    domain: ClassVar[type[Domain[Any]] | None] = None
    """The domain class; built per reset with ``domain.from_initial_state(task.initial_state)``."""
    binding: ClassVar[StateBinding] = ModelBinding("state")
    """Where the domain object keeps the state that is hashed, snapshotted and restored."""
    task_generator: ClassVar[Callable[..., Task] | None] = None
    """``(seed, split="train") -> Task``; used by ``reset`` when neither a task nor a task list is given."""
    eval_split: ClassVar[Path | None] = None
    """A shipped JSONL file of fixed evaluation tasks (see ``toolgym.envs.api.splits``)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.api: Any = None
        """The live domain object (rebuilt at every reset)."""

    # ------------------------------------------------------------------ ToolEnv hooks

    def make_domain(self, task: Task) -> Any:
        """A fresh domain object for ``task`` (override to build it another way)."""
        if self.domain is None:
            raise ConfigError(f"{type(self).__name__} must set domain = <a Domain subclass> or override make_domain()")
        return self.domain.from_initial_state(task.initial_state)

    def setup(self, task: Task) -> None:
        self.api = self.make_domain(task)
        self.world = self.api

    def tool_owners(self) -> list[Any]:
        return [self.api]

    def world_state(self) -> Any:
        return self.binding.dump(self.api)

    def load_world(self, state: Any) -> None:
        self.binding.load(self.api, state)

    def save_world(self) -> Any:
        # A state model forks straight away (copy-on-write, see toolgym.envs.api.cow): the
        # generic path reaches the same fork through a failed JSON copy and copy.deepcopy.
        state = self.world_state()
        if isinstance(state, StateModel) and as_world_state(self.world) is None:
            return fork_world(state)
        return super().save_world()

    def load_saved_world(self, saved: Any) -> None:
        if isinstance(saved, StateModel) and as_world_state(self.world) is None:
            self.load_world(fork_world(saved))
        else:
            super().load_saved_world(saved)

    def state_digest(self) -> str:
        # A copy-on-write world re-encodes only the entities its episode touched (same digest).
        state = self.world_state()
        fast = world_digest(state) if isinstance(state, BaseModel) else None
        return fast if fast is not None else super().state_digest()

    def sample_task(self, rng: np.random.Generator) -> Task:
        generate = type(self).task_generator
        if self.tasks or generate is None:
            return super().sample_task(rng)
        return generate(int(rng.integers(2**31)))

    @classmethod
    def eval_tasks(cls) -> list[Task]:
        """The fixed evaluation tasks shipped with this environment.

        Raises:
            ConfigError: the class ships no eval split.
        """
        if cls.eval_split is None:
            raise ConfigError(f"{cls.__name__} ships no eval split; set eval_split = <path of a JSONL task file>")
        return load_tasks(cls.eval_split)

    # ------------------------------------------------------------------ wrapping plain classes

    @classmethod
    def from_class(
        cls,
        target: type,
        *,
        state_attrs: Sequence[str] | None = None,
        factory: Callable[[dict[str, Any]], Any] | None = None,
        methods: Sequence[str] | None = None,
        system_prompt: str | None = None,
        task_generator: Callable[[int], Task] | None = None,
        state_fn: Callable[[Any], Any] | None = None,
    ) -> type[ApiEnv]:
        """An ``ApiEnv`` subclass whose domain is an unmodified class ``target``.

        Every public method (or those named in ``methods``) becomes a tool through
        ``make_tool``, so each needs type hints and a docstring. See ``from_class`` in
        ``toolgym.envs.api.wrap`` for the arguments.
        """
        from toolgym.envs.api.wrap import from_class

        return from_class(
            target,
            state_attrs=state_attrs,
            factory=factory,
            methods=methods,
            system_prompt=system_prompt,
            task_generator=task_generator,
            state_fn=state_fn,
            base=cls,
        )


def system_prompt_with_policy(intro: str, policy_file: str | Path) -> str:
    """``intro`` followed by the policy document at ``policy_file`` (read once, at class creation).

    Args:
        intro: Who the agent is and what it is for, one or two sentences.
        policy_file: A Markdown policy document shipped next to the domain.
    """
    policy = Path(policy_file).read_text(encoding="utf-8").strip()
    return f"{intro.strip()}\n\n{policy}\n"
