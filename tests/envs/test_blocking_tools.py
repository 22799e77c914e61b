"""Sync tools that block in C without declaring ``timeout_s``: where they run (the policy in
``toolgym.envs.deadline``), and the lock-free watchdog handshake that interrupts the others."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs import deadline
from toolgym.envs.env import ToolEnv
from toolgym.envs.formats import ParsedTurn
from toolgym.envs.tools import tool
from toolgym.envs.types import Limits, Task, ToolCall

MARGIN_S = 0.3  # scheduling slack on a busy 2-core machine


class Sleepy(ToolEnv):
    """Sync tools without ``timeout_s``: one blocks in C, one only computes."""

    def setup(self, task: Task) -> None:
        self.world = {"naps": 0}

    @tool
    def nap(self, seconds: float) -> str:
        """Write, then sleep in C.

        Args:
            seconds: How long.
        """
        self.world["naps"] += 1
        time.sleep(seconds)
        return "awake"

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: First.
            b: Second.
        """
        return a + b


def sleepy(timeout_s: float) -> Sleepy:
    env = Sleepy(tasks=[Task(id="t", instruction="go", limits=Limits(tool_timeout_s=timeout_s, max_turns=10_000))])
    env.reset(seed=0)
    return env


def turn(name: str, **arguments: object) -> ParsedTurn:
    return ParsedTurn(tool_calls=[ToolCall(id="c", name=name, arguments=arguments)])


@pytest.fixture
def forget_blocking():
    before = dict(deadline.BLOCKING)
    yield
    deadline.BLOCKING.clear()
    deadline.BLOCKING.update(before)


def test_a_sync_tool_sleeping_in_c_returns_control_to_an_async_caller_while_other_episodes_step():
    slow, other = sleepy(0.2), sleepy(0.2)

    async def main() -> tuple[float, list[float], object]:
        stamps: list[float] = []
        stop = asyncio.Event()

        async def keep_stepping() -> None:
            while not stop.is_set():
                obs, *_ = await other.astep(turn("add", a=1, b=2))
                assert obs.messages[0].content == "3"
                stamps.append(time.perf_counter())
                await asyncio.sleep(0.005)

        stepper = asyncio.create_task(keep_stepping())
        started = time.perf_counter()
        obs, *_ = await slow.astep(turn("nap", seconds=5.0))
        took = time.perf_counter() - started
        stop.set()
        await stepper
        return took, stamps, obs

    took, stamps, obs = asyncio.run(main())
    assert took < 0.2 + MARGIN_S  # not the 5 s the tool sleeps
    assert obs.messages[0].error == "timeout" and "0.2s" in obs.messages[0].content
    assert slow.world == {"naps": 0}  # rolled back
    assert len(stamps) >= 5 and max(b - a for a, b in zip(stamps, stamps[1:], strict=False)) < MARGIN_S


def test_a_sync_caller_is_held_once_then_the_tool_moves_to_the_workers(forget_blocking):
    env = sleepy(0.1)
    started = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="tool 'nap' blocked past its deadline"):
        obs, *_ = env.step(turn("nap", seconds=0.6))
    assert time.perf_counter() - started >= 0.6  # inline: the first overrun holds its caller
    assert obs.messages[0].error == "timeout" and env.world == {"naps": 0}
    assert id(Sleepy.nap.fn) in deadline.BLOCKING
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        obs, *_ = env.step(turn("nap", seconds=0.6))
    assert time.perf_counter() - started < 0.1 + MARGIN_S  # now on a worker: back at the deadline
    assert obs.messages[0].error == "timeout"
    assert env.step(turn("add", a=2, b=2))[0].messages[0].content == "4"  # the others stay inline


def test_which_thread_runs_a_sync_tool(monkeypatch):
    seen: list[str] = []
    real = deadline.WORKERS.run

    async def spy(fn, kwargs, timeout_s):
        seen.append("worker")
        return await real(fn, kwargs, timeout_s)

    monkeypatch.setattr(deadline.WORKERS, "run", spy)
    env, shipped = sleepy(1.0), toolgym.make("toolgym/unitconv-v0").unwrapped
    shipped.reset(seed=0)
    env.step(turn("add", a=1, b=1))  # sync caller: inline
    assert seen == []
    asyncio.run(env.astep(turn("add", a=1, b=1)))  # event loop, undeclared env: worker
    assert seen == ["worker"]
    asyncio.run(shipped.astep(turn("convert", value=1.0, from_unit="km", to_unit="m")))  # sync_tools_inline: inline
    assert seen == ["worker"]


def test_calls_queue_behind_busy_workers_and_their_deadline_starts_when_they_run():
    workers = deadline.ToolWorkers(max_workers=1)
    release = threading.Event()
    first = workers.submit(release.wait, {"timeout": 5}, 1.0)  # busy, within its deadline

    async def queued() -> int:
        asyncio.get_running_loop().call_later(0.3, release.set)
        return await workers.run(lambda: 7, {}, 0.2)  # waits 0.3 s in the queue, longer than its 0.2 s deadline

    assert asyncio.run(queued()) == 7
    assert first.result(timeout=5) is True


def test_an_interrupt_claimed_but_not_yet_sent_is_withdrawn():
    # Play the watchdog's side by hand: claim the running call's entry, send the interrupt from
    # another thread only after the call has returned. It must not surface after run() returns.
    wd = deadline.Watchdog()

    def tool() -> str:
        ((key, entry),) = wd._entries.items()
        assert wd._entries.pop(key) is entry

        def send() -> None:
            time.sleep(0.02)
            deadline._async_raise(entry[0], deadline.DeadlineExceeded)
            entry[2] = True

        threading.Thread(target=send).start()
        return "done"

    with pytest.raises(TimeoutError):
        wd.run(tool, {}, 60.0)
    total = 0
    for i in range(200_000):  # where a leaked interrupt would land
        total += i
    assert total == sum(range(200_000))


@settings(max_examples=5, deadline=None)
@given(work=st.lists(st.integers(0, 3000), min_size=50, max_size=200))
def test_interrupts_never_leak_across_threads(work):
    # Several threads, deadlines that fall right around the end of each call: every call either
    # returns its value or raises TimeoutError, and nothing escapes into the code after it.
    def spin(n: int) -> int:
        total = 0
        for i in range(n):
            total += i
        return total

    leaks: list[BaseException] = []

    def caller() -> None:
        try:
            for n in work:
                try:
                    assert deadline.WATCHDOG.run(spin, {"n": n}, 0.0003) == sum(range(n))
                except TimeoutError:
                    pass
                for _ in range(20):
                    pass
        except BaseException as exc:  # a leaked DeadlineExceeded would end up here
            leaks.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert leaks == []


STRESS = """
import random, sys, threading
from toolgym.envs import deadline
sys.setswitchinterval(1e-6)  # switch threads after nearly every bytecode: interrupts land anywhere
wd, leaks, results = deadline.Watchdog(), [], []

def spin(n):
    total = 0
    for i in range(n):
        total += i
    return total

def caller(seed):
    draw = random.Random(seed)
    try:
        for _ in range(2000):
            n = draw.randint(0, 300)
            try:
                results.append(wd.run(spin, {"n": n}, draw.choice([0.0, 1e-5, 1e-4])) == sum(range(n)))
            except TimeoutError:
                results.append(True)
    except BaseException as exc:
        leaks.append(repr(exc))

threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(sum(t.is_alive() for t in threads), leaks[:3], len(results), all(results))
"""


def test_an_interrupt_landing_anywhere_in_run_neither_leaks_nor_wedges_the_watchdog(tmp_path):
    # Deadlines of 0-100 µs and a thread switch after nearly every bytecode: interrupts land in the
    # watchdog's own code between publishing an entry and starting the tool. One that landed in
    # threading.Event.set left the Condition's lock held and hung every later call (CI, 2026-12); one
    # that landed before the try escaped as a bare DeadlineExceeded. A subprocess, so a hang fails.
    script = tmp_path / "stress.py"
    script.write_text(STRESS)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "[]", "8000", "True"], done.stdout


def test_the_watchdog_sleeps_between_deadlines_and_wakes_for_an_earlier_one():
    wd = deadline.Watchdog()
    looks = 0
    real = wd._fire_expired

    def counting() -> float:
        nonlocal looks
        looks += 1
        return real()

    wd._fire_expired = counting  # type: ignore[method-assign]  # count the watchdog's wake-ups
    until = time.perf_counter() + 0.3
    calls = 0
    while time.perf_counter() < until:  # 0.3 s of back-to-back calls, each with a 10 s deadline
        wd.run(lambda: None, {}, 10.0)
        calls += 1
    assert calls > 1000 and looks <= 10  # a 5 ms tick would have taken the GIL ~60 times

    release = threading.Event()
    holder = threading.Thread(target=wd.run, args=(release.wait, {"timeout": 5}, 30.0))
    holder.start()  # the watchdog now sleeps until a deadline 30 s away

    def spin() -> None:
        while True:
            pass

    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        wd.run(spin, {}, 0.05)  # a sooner deadline wakes it
    assert time.perf_counter() - started < 0.05 + MARGIN_S
    release.set()
    holder.join()
