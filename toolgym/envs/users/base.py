"""Simulated users: who answers when the assistant replies without calling a tool.

Without a user (solo mode, the default) the assistant's first tool-free turn ends the episode.
With one, ``ToolEnv.on_answer`` asks the user, who replies (a new user message, the episode
goes on), stops (``StopReason.USER_STOP``) or asks for a human (``StopReason.TRANSFER``).

Users are stateless: everything they need is in the task and the conversation so far, so
``snapshot``/``restore`` and replays need nothing extra. What a user knows comes from the
task's ``metadata["user"]``, a ``UserScript``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolgym.envs.types import Message, StopReason, Task, UserMessage
from toolgym.errors import ConfigError, EnvError

USER_STOPS = (StopReason.USER_STOP, StopReason.TRANSFER)


class UserSimulationError(EnvError):
    """The simulated user could not produce a reply (its policy failed): infrastructure."""


class UserReply(BaseModel):
    """What the user does after an assistant answer: say something, stop, or both."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = None
    """What the user says (None: nothing)."""
    stop: StopReason | None = None
    """``USER_STOP`` or ``TRANSFER`` to end the episode; None to let the assistant go on."""

    @model_validator(mode="after")
    def _check(self) -> UserReply:
        if self.stop is not None and self.stop not in USER_STOPS:
            raise ValueError(f"a user stops with USER_STOP or TRANSFER, got {self.stop.value!r}")
        if self.stop is None and not self.message:
            raise ValueError("a user reply that does not stop must say something (message is empty)")
        return self

    def as_messages(self) -> list[Message]:
        """The reply as conversation messages."""
        return [UserMessage(content=self.message)] if self.message else []


class Fact(BaseModel):
    """Something the user knows and tells only at the right moment."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    """What the user says to give the fact."""
    keywords: list[str] = Field(default_factory=list)
    """Words in an assistant turn that count as asking for it (case-insensitive). Without
    keywords the fact is volunteered, in order, each time the assistant answers."""


class UserScript(BaseModel):
    """What a simulated user knows and wants; ``Task.metadata["user"]`` holds one.

    Example:
        >>> UserScript.model_validate({"facts": [{"text": "It is order A17.", "keywords": ["order"]}]}).max_replies
        5
    """

    model_config = ConfigDict(extra="forbid")

    facts: list[Fact] = Field(default_factory=list)
    done_when: list[str] = Field(default_factory=list)
    """The user is satisfied when an answer contains all of these (default: the task's expected outputs)."""
    transfer_when: list[str] = Field(default_factory=lambda: ["transfer you", "human agent"])
    """An answer containing any of these hands the conversation to a human."""
    max_replies: int = Field(default=5, ge=0)
    """Replies after which the user gives up (``USER_STOP``)."""
    persona: str | None = None
    """How an LLM user behaves (a scripted user ignores it)."""
    goal: str | None = None
    """What the user wants, in full (an LLM user's hidden brief; default: the instruction)."""


def load_script(task: Task, default: UserScript | None = None) -> UserScript:
    """The task's ``metadata["user"]`` as a ``UserScript`` (or ``default``, or an empty script).

    Raises:
        ConfigError: naming the task, the field and the expected form.
    """
    raw = task.metadata.get("user")
    if raw is None:
        return default or UserScript()
    try:
        return UserScript.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(script)"
        raise ConfigError(
            f"task {task.id!r}: metadata.user.{where}: {first['msg']}; a user script looks like "
            "{'facts': [{'text': 'My order is A17.', 'keywords': ['order']}], 'done_when': ['refund']}"
        ) from None


def user_turns(messages: Sequence[Message]) -> list[str]:
    """What the user has said after the opening instruction."""
    said = [m.content for m in messages if isinstance(m, UserMessage)]
    return said[1:]


@runtime_checkable
class SimulatedUser(Protocol):
    """Replies to an assistant answer, given the task and the conversation (answer included)."""

    def reply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """``areply`` from sync code: a thin edge, ``return toolgym.aio.run_sync(self.areply(...))``."""
        ...

    async def areply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """The user's reply (the one implementation; both ``ToolEnv.step`` and ``astep`` await it).

        Code that waits on asyncio (a policy, I/O) first awaits ``toolgym.aio.loop_needed()``.
        """
        ...
