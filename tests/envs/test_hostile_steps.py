"""``step`` never raises for anything the model does, every observation is bounded, and no call
holds its caller past its deadline (plus a margin). Inputs are generated (hypothesis)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs import deadline
from toolgym.envs.env import ToolEnv
from toolgym.envs.formats import ParsedTurn
from toolgym.envs.tools import PolicyViolation, tool
from toolgym.envs.types import Limits, Task, ToolCall

SHIPPED = ["toolgym/unitconv-v0", "toolgym/retail-v0", "toolgym/calendar_email-v0", "toolgym/banking-v0"]
MAX_CHARS = 4000
MARGIN = len("\n...[output truncated: 000000000 more characters]") + 200  # marker and message header

WEIRD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**40), 10**40),
    st.sampled_from(["\ud800", "x\udfff", "\u2028", "A" * 20_000, None, True]),
    st.integers(1, 400).map(lambda n: n * [0]).map(lambda v: {"deep": _nest(v)}),
)


def _nest(v):
    out: object = 1
    for _ in v:
        out = [out]
    return out


def _call(name: str, arguments: str) -> str:
    return '<tool_call>{"name": "' + name + '", "arguments": ' + arguments + "}</tool_call>"


def _texts(name: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([
            _call(name, "[" * 3000 + "]" * 3000),
            _call(name, '{"value": ' + "9" * 6000 + "}"),
            _call(name, '{"value": NaN}'),
            _call(name, '{"value": 1e400}'),
            _call("x" * 1_000_000, "{}"),
            '<tool_call>{"name": "' + name + '"',
        ]),
        st.text(max_size=200),
    )


@pytest.mark.parametrize("env_id", SHIPPED)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_step_never_raises_and_observations_stay_bounded(env_id, data):
    env = toolgym.make(env_id)
    env.reset(seed=data.draw(st.integers(0, 5)))
    names = [t.name for t in env.toolbox.specs()]
    for _ in range(3):
        if env.stop_reason is not None:
            break
        name = data.draw(st.sampled_from(names))
        if data.draw(st.booleans()):
            action = data.draw(_texts(name))
        else:  # a structured call (as an endpoint's tool_calls arrive): NaN, surrogates, depth
            args = data.draw(st.dictionaries(st.sampled_from(["value", "name", "order_id", "amount_cents", "x"]), WEIRD, max_size=3))
            action = ParsedTurn(tool_calls=[ToolCall(id="c", name=name, arguments=args)])
        obs, reward, terminated, truncated, info = env.step(action)
        assert all(len(m.content) <= MAX_CHARS + MARGIN for m in obs.messages)
        assert len(info["results"]) == info["tool_calls"]
        for result, message in zip(info["results"], [m for m in obs.messages if not m.tool_call_id.startswith("parse_error")], strict=False):
            assert (result.error is None) == (message.error is None)  # result and observation agree
    env.state_digest()  # NaN or surrogates in the world never break the hash


class Tools(ToolEnv):
    """Tools that misbehave on purpose."""

    def setup(self, task: Task) -> None:
        self.world = {"n": 0}

    @tool
    def spin(self) -> str:
        """Loop forever in Python."""
        while True:
            pass

    @tool(timeout_s=0.2)
    def nap(self, seconds: float) -> str:
        """Sleep (blocks in C).

        Args:
            seconds: How long.
        """
        time.sleep(seconds)
        return "awake"

    @tool
    def half_write(self) -> str:
        """Change the world, then crash."""
        self.world["n"] += 1
        raise RuntimeError("crashed half-way")

    @tool
    def refuse(self) -> str:
        """A domain rule forbids this."""
        self.world["n"] += 100
        raise PolicyViolation("transfers above the limit need a confirmation")

    @tool
    def weird_output(self) -> dict:
        """Return something that is not JSON."""
        return {"when": object()}

    @tool
    def hostile_message(self) -> str:
        """Raise an exception with an enormous message."""
        raise ValueError("x" * 5_000_000)


def tools_env(timeout_s: float = 0.3) -> Tools:
    env = Tools(tasks=[Task(id="t", instruction="go", limits=Limits(tool_timeout_s=timeout_s, max_turns=50))])
    env.reset(seed=0)
    return env


def run(env: Tools, name: str, **arguments):
    obs, *_rest, info = env.step(ParsedTurn(tool_calls=[ToolCall(id="c", name=name, arguments=arguments)]))
    return obs.messages[0], info["results"][0]


def test_a_sync_tool_looping_in_python_is_interrupted_at_its_deadline():
    env = tools_env(0.3)
    started = time.perf_counter()
    message, _ = run(env, "spin")
    assert message.error == "timeout"
    assert time.perf_counter() - started < 0.3 + 0.5  # deadline plus a margin for a busy 2-core machine
    assert run(env, "half_write")[0].error == "tool_exception"  # the env still works afterwards


def test_a_blocking_tool_with_a_deadline_never_holds_the_event_loop():
    env = tools_env()

    async def main() -> tuple[float, float]:
        ticks: list[float] = []

        async def ticker() -> None:
            for _ in range(20):
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        started = time.perf_counter()
        obs, *_ = await env.astep(ParsedTurn(tool_calls=[ToolCall(id="c", name="nap", arguments={"seconds": 1.0})]))
        took = time.perf_counter() - started
        await t
        assert obs.messages[0].error == "timeout"
        return took, max(b - a for a, b in zip(ticks, ticks[1:], strict=False))

    took, worst_gap = asyncio.run(main())
    assert took < 0.2 + 0.5 and worst_gap < 0.5  # without the worker the loop would stall for 1 s


def test_a_pool_clogged_by_calls_stuck_past_their_deadline_is_an_infrastructure_error_not_the_models():
    workers = deadline.ToolWorkers(max_workers=2)
    release = threading.Event()
    try:
        stuck = [workers.submit(release.wait, {"timeout": 5}, 0.05) for _ in range(2)]  # blocked in C past 0.05 s
        time.sleep(0.05 + deadline.GRACE_S + 0.1)
        with pytest.raises(deadline.PoolSaturated, match="all 2 tool worker threads are stuck"):
            workers.submit(release.wait, {"timeout": 5}, 1.0)
    finally:
        release.set()
    for future in stuck:  # released, each reports its overrun
        assert isinstance(future.exception(timeout=5), TimeoutError)
    assert workers.submit(lambda: 7, {}, 1.0).result(timeout=5) == 7  # and the pool takes calls again


def test_a_failed_call_is_rolled_back_and_refusals_have_their_own_kind():
    env = tools_env()
    before = env.state_digest()
    message, result = run(env, "half_write")
    assert message.error == result.error.kind == "tool_exception"
    assert env.state_digest() == before and env.world["n"] == 0
    message, _ = run(env, "refuse")
    assert message.error == "policy_violation" and "need a confirmation" in message.content
    assert env.world["n"] == 0


def test_unserializable_output_keeps_result_and_observation_consistent():
    message, result = run(tools_env(), "weird_output")
    assert message.error == "unserializable_output" and result.error is not None and result.error.kind == "unserializable_output"


def test_error_texts_and_unknown_names_are_capped_and_fuzzy_matching_is_bounded():
    env = tools_env()
    message, _ = run(env, "hostile_message")
    assert len(message.content) < MAX_CHARS + MARGIN
    started = time.perf_counter()
    message, _ = run(env, "s" * 10_000_000)
    assert time.perf_counter() - started < 1.0
    assert message.error == "unknown_tool" and len(message.content) < 1000


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda s: s not in Tools.__dict__))
def test_a_task_naming_a_missing_tool_is_refused_up_front(name):
    env = Tools(tasks=[Task(id="t", instruction="go", tools=["spin", name])])
    with pytest.raises(toolgym.errors.ConfigError, match="field 'tools' names"):
        env.reset(seed=0)


def test_a_misspelled_task_tool_gets_did_you_mean():
    env = Tools(tasks=[Task(id="t", instruction="go", tools=["refuze"])])
    with pytest.raises(toolgym.errors.ConfigError, match="Did you mean 'refuse'"):
        env.reset(seed=0)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.text(max_size=3), min_size=1, max_size=2)))
def test_unitconv_initial_state_of_the_wrong_types_is_a_config_error(memory):
    env = toolgym.make("toolgym/unitconv-v0")
    with pytest.raises(toolgym.errors.ConfigError, match="initial_state.memory"):
        env.reset(options={"task": Task(id="t", instruction="x", initial_state={"memory": memory})})


def test_unitconv_calculate_never_blocks_on_huge_powers():
    env = toolgym.make("toolgym/unitconv-v0")
    env.reset(seed=0)
    started = time.perf_counter()
    obs = env.step('<tool_call>{"name": "calculate", "arguments": {"expression": "((((9**64)**64)**64)**64)**64"}}</tool_call>')[0]
    assert time.perf_counter() - started < 0.5 and obs.messages[0].error == "tool_exception"
