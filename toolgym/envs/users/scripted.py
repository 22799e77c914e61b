"""``ScriptedUser``: reveals what the task hides, by rules, and stops when satisfied.

Rules, applied to each assistant answer in order:

1. the answer hands over to a human (``transfer_when``): ``TRANSFER``;
2. the answer contains everything in ``done_when``: thanks and ``USER_STOP``;
3. the user has replied ``max_replies`` times: gives up, ``USER_STOP``;
4. the answer asks for facts (their keywords): the user gives those facts;
5. else the next volunteered fact (one without keywords), if any;
6. else, with nothing to reveal and no ``done_when``, the user is done: ``USER_STOP``;
   otherwise the user says they have nothing to add.

>>> from toolgym.envs.types import Task, UserMessage
>>> task = Task(id="t", instruction="Book me a table.", metadata={"user": {
...     "facts": [{"text": "For 4 people.", "keywords": ["how many"]}], "done_when": ["booked"]}})
>>> ScriptedUser().reply(task, [UserMessage(content=task.instruction)], "How many people?").message
'For 4 people.'
"""

from __future__ import annotations

from collections.abc import Sequence

from toolgym.aio import run_sync
from toolgym.envs.types import Message, StopReason, Task
from toolgym.envs.users.base import Fact, UserReply, UserScript, load_script, user_turns

THANKS = "Thank you, that is all I needed."
GIVE_UP = "This is taking too long; I will stop here."
NOTHING_TO_ADD = "I have nothing to add. Please go ahead."


class ScriptedUser:
    """A rule-based user driven by the task's ``metadata["user"]`` script.

    Args:
        default: Script for tasks without one (default: an empty script, which stops after
            the first answer unless ``done_when`` or facts say otherwise).
    """

    def __init__(self, default: UserScript | None = None):
        self.default = default

    def reply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """``areply`` from sync code."""
        return run_sync(self.areply(task, messages, answer))

    async def areply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """Apply the rules in the module docstring (they never wait)."""
        script = load_script(task, self.default)
        text = answer.lower()
        said = user_turns(messages)
        done_when = script.done_when or task.expected.outputs
        if any(p.lower() in text for p in script.transfer_when):
            return UserReply(stop=StopReason.TRANSFER)
        if done_when and all(p.lower() in text for p in done_when):
            return UserReply(message=THANKS, stop=StopReason.USER_STOP)
        if len(said) >= script.max_replies:
            return UserReply(message=GIVE_UP, stop=StopReason.USER_STOP)
        hidden = [f for f in script.facts if not any(f.text in s for s in said)]
        reveal = _asked_for(hidden, text) or [f for f in hidden if not f.keywords][:1]
        if reveal:
            return UserReply(message=" ".join(f.text for f in reveal))
        if not hidden and not done_when:
            return UserReply(message=THANKS, stop=StopReason.USER_STOP)
        return UserReply(message=NOTHING_TO_ADD)


def _asked_for(hidden: list[Fact], text: str) -> list[Fact]:
    return [f for f in hidden if f.keywords and any(k.lower() in text for k in f.keywords)]
