"""Env pools without Ray: the local pool, and the env actor's batched calls run in-process
(what they return is what a local env returns, through a pickle)."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs.catalog.unitconv.env import UnitConvEnv
from toolgym.envs.tools import tool
from toolgym.envs.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks
from toolgym.rollouts.env_actor import EnvActor, fast_pickling
from toolgym.rollouts.pool import LocalEnvPool

UNITCONV = "toolgym/unitconv-v0"


def comparable(episodes):
    return [e.without_timings() for e in episodes]


text = st.text(max_size=40)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8)
calls = st.builds(ToolCall, id=text, name=st.from_regex(r"[a-z_]{1,12}", fullmatch=True), arguments=st.dictionaries(text, json_values, max_size=3))
messages = st.lists(st.one_of(
    st.builds(SystemMessage, content=text), st.builds(UserMessage, content=text),
    st.builds(AssistantMessage, content=text, tool_calls=st.lists(calls, max_size=3), raw=st.none() | text),
    st.builds(ToolMessage, tool_call_id=text, name=text, content=text, error=st.none() | st.just("timeout")),
), max_size=6)


@settings(max_examples=60, deadline=None)
@given(msgs=messages)
def test_messages_cross_a_pickle_unchanged(msgs):
    fast_pickling()  # what both ends of a Ray pool use
    back = pickle.loads(pickle.dumps(msgs))  # what an actor's reply does to the messages it carries
    assert [type(m) for m in back] == [type(m) for m in msgs]
    assert [m.model_dump() for m in back] == [m.model_dump() for m in msgs]
    assert back == msgs and [m.model_fields_set for m in back] == [m.model_fields_set for m in msgs]
    assert [m.model_dump(exclude_unset=True) for m in back] == [m.model_dump(exclude_unset=True) for m in msgs]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), texts=st.lists(st.sampled_from([
    '<tool_call>{"name": "store", "arguments": {"name": "k", "value": 1}}</tool_call>',
    '<tool_call>{"name": "recall", "arguments": {"name": "k"}}</tool_call>',
    '<tool_call>{"name": "nope"}</tool_call>', "<tool_call>{broken", "the answer is 1",
]), min_size=1, max_size=5))
def test_env_actor_replies_are_what_a_local_env_returns(seed, texts):
    async def go():
        actor = EnvActor(lambda: toolgym.make(UNITCONV), gc_policy="default")
        local = toolgym.make(UNITCONV)
        [remote_reset] = await actor.reset_many([(1, seed, None)])
        assert pickle.loads(pickle.dumps(remote_reset)) == local.reset(seed=seed)
        for text in texts:
            [remote] = await actor.step_many([(1, text)])
            if isinstance(remote, Exception):  # the episode ended: both refuse the same way
                with pytest.raises(type(remote)):
                    local.step(text)
                return
            assert pickle.loads(pickle.dumps(remote)) == local.step(text)

    asyncio.run(go())


def test_local_pool_reuses_envs_without_changing_episodes():
    tasks = sample_tasks(UNITCONV, n=6, seed=1)
    shared = LocalEnvPool()
    first = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=shared, concurrency=2)
    again = run_episodes(UNITCONV, ScriptedPolicy.gold(tasks), tasks=tasks, pool=shared, concurrency=5)
    assert comparable(first) == comparable(again)


def test_env_actor_isolates_a_broken_item_and_serializes_one_env():
    async def go():
        actor = EnvActor(lambda: toolgym.make(UNITCONV), gc_policy="default")
        await actor.ready()
        await actor.reset_many([(1, 0, None), (2, 1, None)])
        call = '<tool_call>{"name": "store", "arguments": {"name": "k", "value": 1}}</tool_call>'
        replies = await actor.step_many([(1, call), (7, call), (2, call)])
        assert isinstance(replies[1], KeyError) and not isinstance(replies[0], Exception) and not isinstance(replies[2], Exception)
        # two batches touching env 1 at once: its steps run one after the other, in arrival order
        first, second = await asyncio.gather(actor.step_many([(1, call)]), actor.step_many([(1, call)]))
        assert second[0][4]["turn"] == first[0][4]["turn"] + 1
        assert (await actor.stats())["live"] == 2
        await actor.close_many([(1, True), (2, False)])
        assert (await actor.stats())["live"] == 0

    asyncio.run(go())


class ThreadedEnv(UnitConvEnv):
    """Its tool has a deadline, so the toolbox runs it in a thread: the step suspends."""

    @tool(timeout_s=5)
    def slow_echo(self, text: str, pause_s: float) -> str:
        """Wait, then echo.

        Args:
            text: What to echo.
            pause_s: Seconds to wait first.
        """
        time.sleep(pause_s)
        return text


def test_env_actor_steps_that_suspend_do_not_hold_up_the_others():
    def call(text, pause):
        return '<tool_call>{"name": "slow_echo", "arguments": {"text": "' + text + '", "pause_s": ' + str(pause) + "}}</tool_call>"

    async def go():
        actor = EnvActor(ThreadedEnv, gc_policy="default")
        await actor.reset_many([(k, k, None) for k in range(4)])
        started = time.perf_counter()
        replies = await actor.step_many([(0, call("a", 0.3)), (1, call("b", 0.3)), (2, "no call, an answer"), (3, call("d", 0.3))])
        elapsed = time.perf_counter() - started
        echoed = [r[0].messages[-1].content if r[0].messages else r[4]["assistant"].content for r in replies]
        assert [echoed[0], echoed[1], echoed[3]] == ["a", "b", "d"] and replies[2][4]["stop_reason"] is not None
        assert elapsed < 0.8, elapsed  # the three threaded tools overlapped instead of 0.9 s in a row

    asyncio.run(go())
