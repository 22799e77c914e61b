"""``LLMUser``: a policy plays the user, from a persona and the task's hidden brief.

The policy sees the conversation from the user's side (the assistant's turns as the other
party's, tool traffic left out) and replies in plain text. A reply containing ``###STOP###``
ends the episode as ``USER_STOP``; ``###TRANSFER###`` as ``TRANSFER``. A policy failure is a
``UserSimulationError`` (infrastructure, not the assistant's fault).

In ``astep`` the policy is awaited on the caller's event loop. In sync ``step`` it runs on a
private loop; inside a running loop that could deadlock a batching policy bound to that loop,
so ``step`` refuses with a message that says to use ``astep``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolgym.aio import loop_needed, run_sync, sync_inside_loop
from toolgym.envs.canonical import seed_from
from toolgym.envs.types import AssistantMessage, Message, StopReason, SystemMessage, Task, UserMessage
from toolgym.envs.users.base import UserReply, UserScript, UserSimulationError, load_script, user_turns
from toolgym.policy import Policy, PolicyRequest, SamplingParams

STOP_TOKEN = "###STOP###"
TRANSFER_TOKEN = "###TRANSFER###"
DEFAULT_PERSONA = "You are a customer talking to an assistant. Be brief and natural; never invent facts you were not given."


class LLMUser:
    """A simulated user played by any ``Policy``.

    Args:
        policy: Generates the user's turns.
        persona: Default persona (a task's ``metadata["user"]["persona"]`` overrides it).
        max_replies: Default reply budget; after it the user stops.
        sampling: Sampling of the user's turns.
        seed: Mixed into every request seed (different seeds, different users).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        persona: str = DEFAULT_PERSONA,
        max_replies: int | None = None,
        sampling: SamplingParams | None = None,
        seed: int = 0,
    ):
        self.policy = policy
        self.persona = persona
        self.max_replies = max_replies
        self.sampling = sampling or SamplingParams(temperature=0.7, max_new_tokens=128)
        self.seed = seed

    async def areply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """Ask the policy for the user's next turn and read its stop signals."""
        script = load_script(task)
        budget = self.max_replies if self.max_replies is not None else script.max_replies
        if len(user_turns(messages)) >= budget:
            return UserReply(message="I have to go now.", stop=StopReason.USER_STOP)
        request = PolicyRequest(
            episode_id=f"user/{task.id}", task_id=task.id, messages=self.prompt(task, script, messages),
            seed=seed_from(self.seed, task.id, len(messages), answer) >> 1, sampling=self.sampling,
        )
        if sync_inside_loop():
            raise UserSimulationError(
                "an LLMUser cannot answer inside env.step() while an event loop is running (its policy may be "
                "bound to that loop); call `await env.astep(...)` instead"
            )
        await loop_needed()
        try:
            (turn,) = await self.policy.generate([request])
        except Exception as exc:  # policies should not raise; if one does, it is still infrastructure
            raise UserSimulationError(f"the simulated user's policy raised {type(exc).__name__}: {exc}") from exc
        if turn.error is not None:
            raise UserSimulationError(f"the simulated user's policy failed ({turn.error.kind}): {turn.error.message}")
        return read_reply(turn.text)

    def reply(self, task: Task, messages: Sequence[Message], answer: str) -> UserReply:
        """``areply`` from sync code; refused inside a running event loop (use ``astep``)."""
        return run_sync(self.areply(task, messages, answer))

    def prompt(self, task: Task, script: UserScript, messages: Sequence[Message]) -> list[Any]:
        """The conversation from the user's side: the user's turns become the policy's own."""
        facts = "\n".join(f"- {f.text}" for f in script.facts) or "- (none beyond your goal)"
        brief = "\n".join([
            script.persona or self.persona,
            f"Your goal: {script.goal or task.instruction}",
            f"Facts you may share, only when the assistant asks for them:\n{facts}",
            f"When your goal is met, reply {STOP_TOKEN}. If you want a human instead, reply {TRANSFER_TOKEN}.",
        ])
        flipped: list[Any] = [SystemMessage(content=brief)]
        for m in messages:
            if isinstance(m, UserMessage):
                flipped.append(AssistantMessage(content=m.content))
            elif isinstance(m, AssistantMessage) and m.content and not m.tool_calls:
                flipped.append(UserMessage(content=m.content))
        return flipped


def read_reply(text: str) -> UserReply:
    """A user reply from policy text: stop and transfer tokens become stop reasons."""
    stop = StopReason.TRANSFER if TRANSFER_TOKEN in text else StopReason.USER_STOP if STOP_TOKEN in text else None
    message = text.replace(TRANSFER_TOKEN, "").replace(STOP_TOKEN, "").strip() or None
    if stop is None and message is None:
        message = "..."  # an empty turn is still a (silent) reply; the assistant goes on
    return UserReply(message=message, stop=stop)
