"""Simulated users: scripted reveal-and-stop rules, LLM personas, stop/transfer, solo mode."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

import toolgym
from toolgym.envs import check_env
from toolgym.envs.types import AssistantMessage, StopReason, SystemMessage, Task, UserMessage
from toolgym.envs.users import LLMUser, ScriptedUser, UserReply, UserScript, UserSimulationError
from toolgym.errors import ConfigError
from toolgym.policy import PolicyError, PolicyRequest, PolicyTurn
from toolgym.rollouts import ScriptedPolicy, run_episodes

REFUND = Task(
    id="refund",
    instruction="I want my money back for a broken kettle.",
    metadata={"user": {
        "facts": [
            {"text": "The order number is A-1017.", "keywords": ["order number", "order id"]},
            {"text": "It stopped heating after two days."},
        ],
        "done_when": ["refund", "A-1017"],
    }},
)


def env(task: Task = REFUND, user=None):
    e = toolgym.make("toolgym/unitconv-v0", user=user if user is not None else ScriptedUser())
    e.reset(seed=0, options={"task": task})
    return e


def test_scripted_user_reveals_facts_when_asked_then_stops_when_satisfied():
    e = env()
    obs, _, terminated, _, info = e.step("Could you give me the order number?")
    assert [m.content for m in obs.messages] == ["The order number is A-1017."] and not terminated
    obs, *_ = e.step("Thanks. Anything else about the problem?")
    assert obs.messages[0].content == "It stopped heating after two days."  # volunteered, in order
    obs, *_ = e.step("Hmm.")
    assert obs.messages[0].content == "I have nothing to add. Please go ahead."
    obs, _, terminated, truncated, info = e.step("Your refund for order A-1017 is on its way.")
    assert terminated and not truncated and info["stop_reason"] is StopReason.USER_STOP
    assert obs.messages[0].content.startswith("Thank you")
    assert [m.role for m in e.messages].count("user") == 5  # instruction + four replies


def test_only_the_asked_for_fact_is_given():
    e = env()
    obs, *_ = e.step("What is the order id? And can you describe what went wrong?")
    assert obs.messages[0].content == "The order number is A-1017."  # only the asked-for one; the other comes when nothing is asked


def test_handing_over_to_a_human_is_a_transfer():
    e = env()
    obs, _, terminated, _, info = e.step("I will transfer you to a human agent now.")
    assert terminated and info["stop_reason"] is StopReason.TRANSFER and obs.messages == []


def test_the_user_gives_up_after_max_replies():
    task = REFUND.model_copy(update={"metadata": {"user": {"done_when": ["never said"], "max_replies": 2}}})
    e = env(task)
    for _ in range(2):
        assert e.step("Working on it.")[0].messages[0].content == "I have nothing to add. Please go ahead."
    obs, _, terminated, _, info = e.step("Still working.")
    assert terminated and info["stop_reason"] is StopReason.USER_STOP and "stop here" in obs.messages[0].content


def test_without_done_when_the_expected_outputs_satisfy_the_user():
    task = Task(id="t", instruction="Convert 1 km to m.", expected={"outputs": ["1000"]})
    e = env(task)
    assert e.step("It is 999 m.")[2] is False
    _, reward, terminated, *_ = e.step("It is 1000 m.")
    assert terminated and reward == 1.0


def test_solo_mode_is_the_default():
    e = toolgym.make("toolgym/unitconv-v0")
    e.reset(seed=0, options={"task": REFUND})
    *_, info = e.step("Done.")
    assert e.user is None and info["stop_reason"] is StopReason.ANSWERED


def test_a_malformed_user_script_names_the_field():
    task = REFUND.model_copy(update={"metadata": {"user": {"facts": [{"txt": "x"}]}}})
    with pytest.raises(ConfigError, match=r"task 'refund': metadata.user.facts.0.text: Field required"):
        env(task).step("Hello?")


def test_replies_are_checked():
    with pytest.raises(ValueError, match="must say something"):
        UserReply()
    with pytest.raises(ValueError, match="USER_STOP or TRANSFER"):
        UserReply(stop=StopReason.ANSWERED)


def test_scripted_users_survive_snapshot_and_restore():
    e = env()
    snap = e.snapshot()
    first = e.step("What is the order number?")[0]
    e.restore(snap)
    assert e.step("What is the order number?")[0] == first


def test_gold_episodes_with_a_scripted_user_run_through_the_loop():
    task = REFUND.model_copy(update={"gold_answer": "Your refund for A-1017 is approved."})
    episodes = run_episodes(lambda: toolgym.make("toolgym/unitconv-v0", user=ScriptedUser()), ScriptedPolicy.gold([task]), tasks=[task])
    assert episodes[0].stop_reason is StopReason.USER_STOP


def test_env_with_a_user_passes_the_checker():
    check_env(toolgym.make("toolgym/unitconv-v0", user=ScriptedUser(UserScript(facts=[{"text": "Use km."}]))))


# ------------------------------------------------------------------ LLM users


class Persona:
    """A fake user policy that answers from what it is shown."""

    def __init__(self, reply: str | PolicyTurn):
        self.reply = reply
        self.requests: list[PolicyRequest] = []

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        self.requests.extend(requests)
        return [self.reply if isinstance(self.reply, PolicyTurn) else PolicyTurn(text=self.reply) for _ in requests]


@pytest.mark.parametrize(
    "text, stop, message",
    [("It's order A-1017.", None, "It's order A-1017."), ("Great, thanks! ###STOP###", StopReason.USER_STOP, "Great, thanks!"),
     ("###TRANSFER###", StopReason.TRANSFER, None)],
)
async def test_llm_user_replies_and_stops(text, stop, message):
    persona = Persona(text)
    e = env(user=LLMUser(persona))
    obs, _, terminated, _, info = await e.astep("Which order is it?")
    assert info["stop_reason"] is stop and terminated is (stop is not None)
    assert [m.content for m in obs.messages] == ([message] if message else [])


async def test_llm_user_sees_the_conversation_from_its_side():
    persona = Persona("A-1017")
    e = env(user=LLMUser(persona, persona="You are terse."))
    await e.astep("Which order is it?")
    shown = persona.requests[0].messages
    assert isinstance(shown[0], SystemMessage) and "You are terse." in shown[0].content and "A-1017" in shown[0].content
    assert [(type(m), m.content) for m in shown[1:]] == [(AssistantMessage, REFUND.instruction), (UserMessage, "Which order is it?")]


async def test_llm_user_failures_are_infrastructure_errors():
    broken = PolicyTurn(finish_reason="error", error=PolicyError(kind="timeout", message="no answer"))
    e = env(user=LLMUser(Persona(broken)))
    with pytest.raises(UserSimulationError, match=r"policy failed \(timeout\)"):
        await e.astep("Hello?")


async def test_sync_step_with_an_llm_user_inside_a_loop_says_use_astep():
    e = env(user=LLMUser(Persona("hi")))
    with pytest.raises(UserSimulationError, match="await env.astep"):
        e.step("Hello?")


def test_sync_step_with_an_llm_user_outside_a_loop_works():
    e = env(user=LLMUser(Persona("###STOP###"), max_replies=3))
    assert e.step("Hello?")[4]["stop_reason"] is StopReason.USER_STOP
    assert asyncio.run(LLMUser(Persona("x"), max_replies=0).areply(REFUND, e.messages, "a")).stop is StopReason.USER_STOP
