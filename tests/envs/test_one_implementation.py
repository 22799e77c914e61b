"""Every hook has one implementation, the ``async def``; its sync twin is a thin edge.

The rule is checked structurally over the source: wherever a scope (class or module) defines
both ``x`` and ``async def ax``, the body of ``x`` is only ``return run_sync(<coroutine>)``.
A new pair written twice fails here, whatever its name. ``toolgym.aio.run_sync`` itself is
tested below: values, exceptions, suspension, nesting and calls from inside a running loop.
"""

from __future__ import annotations

import ast
import asyncio
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.aio import loop_needed, run_sync, sync_inside_loop
from toolgym.envs.dispatch import ToolBox
from toolgym.envs.tools import collect_tools, tool
from toolgym.envs.types import ToolCall

ROOT = Path(toolgym.__file__).parent
SCOPES = ["envs"]
"""Where hooks live. Whole runs (``run_episodes``, ``score_episodes``) own a fresh loop via ``asyncio.run``."""


def _pairs() -> list[tuple[str, str, ast.FunctionDef]]:
    """(file, scope.name, sync function) for every sync function that has an async twin."""
    found = []
    for folder in SCOPES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            scopes = [("<module>", tree.body)] + [(n.name, n.body) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
            for scope, body in scopes:
                asyncs = {f.name for f in body if isinstance(f, ast.AsyncFunctionDef)}
                for fn in body:
                    if isinstance(fn, ast.FunctionDef) and "a" + fn.name in asyncs:
                        found.append((str(path.relative_to(ROOT)), f"{scope}.{fn.name}", fn))
    return found


def _is_thin_edge(fn: ast.FunctionDef) -> bool:
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    if len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and body[0].value.value is Ellipsis:
        return True  # a Protocol's declaration
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return False
    call = body[0].value
    return (
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "run_sync"
        and len(call.args) == 1 and isinstance(call.args[0], ast.Call)
    )


def test_the_known_pairs_are_found():
    """The scan sees the hooks the issue names (so the rule below is not vacuous)."""
    names = {name for _, name, _ in _pairs()}
    for expected in ["ToolEnv.step", "ToolEnv.on_answer", "ToolBox.call", "ScriptedUser.reply", "LLMUser.reply",
                     "SchemaSimulator.simulate", "LLMSimulator.simulate", "ToolCallWrapper.step", "MCPClient.call_tool",
                     "<module>.synthesize"]:
        assert expected in names


def test_every_sync_hook_is_a_thin_edge_over_its_async_twin():
    written_twice = [f"{path}: {name}" for path, name, fn in _pairs() if not _is_thin_edge(fn)]
    assert not written_twice, "sync hooks with their own body (make them `return run_sync(self.a...(...))`):\n" + "\n".join(written_twice)


def test_the_checker_rejects_a_second_implementation():
    twice = ast.parse("def step(self, a):\n    x = self.world\n    return run_sync(self.astep(a))\n").body[0]
    thin = ast.parse('def step(self, a):\n    """Doc."""\n    return run_sync(self.astep(a))\n').body[0]
    assert isinstance(twice, ast.FunctionDef) and isinstance(thin, ast.FunctionDef)
    assert not _is_thin_edge(twice) and _is_thin_edge(thin)


def test_subclasses_that_override_only_the_async_hook_change_both():
    from toolgym.envs.wrappers import FaultInjection

    # a tool-call wrapper overrides the one async seam, never a sync twin
    assert [name for name in vars(FaultInjection) if callable(vars(FaultInjection)[name]) and name != "__init__"] == ["call_tool"]


# ---------------------------------------------------------------------- run_sync


async def _pure(x: int) -> int:
    return x * 2


async def _waits(x: int, pause: float = 0.001) -> int:
    await loop_needed()
    await asyncio.sleep(pause)
    return x + 1


@settings(max_examples=50, deadline=None)
@given(st.integers(), st.booleans())
def test_run_sync_returns_what_awaiting_returns(x, suspend):
    coro = _waits(x, 0) if suspend else _pure(x)
    expected = x + 1 if suspend else x * 2
    assert run_sync(coro) == expected


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=20), st.booleans())
def test_run_sync_raises_what_the_coroutine_raises(message, suspend):
    async def fails() -> None:
        if suspend:
            await loop_needed()
            await asyncio.sleep(0)
        raise KeyError(message)

    with pytest.raises(KeyError) as caught:
        run_sync(fails())
    assert caught.value.args == (message,)


def test_a_coroutine_that_never_suspends_needs_no_loop():
    # No loop exists in this worker thread; a pure coroutine must not create one.
    seen = []

    def worker() -> None:
        seen.append(run_sync(_pure(21)))
        try:
            asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            seen.append("no loop")

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [42, "no loop"]


async def test_run_sync_works_inside_a_running_loop():
    assert run_sync(_pure(2)) == 4
    assert run_sync(_waits(2)) == 3  # finished on a private loop in a thread


async def test_sync_inside_loop_is_only_true_under_run_sync():
    async def probe() -> bool:
        return sync_inside_loop()

    assert not await probe()
    assert run_sync(probe())


def test_nested_run_sync_in_a_suspended_coroutine():
    async def outer() -> int:
        await loop_needed()
        await asyncio.sleep(0)
        return run_sync(_waits(10)) + run_sync(_pure(1))

    assert run_sync(outer()) == 13


def test_loop_needed_does_nothing_inside_ordinary_async_code():
    assert asyncio.run(_waits(1)) == 2


def test_a_suspension_without_loop_needed_is_a_clear_error():
    async def forgot() -> None:
        fut = asyncio.get_event_loop_policy().new_event_loop().create_future()
        await fut

    with pytest.raises(RuntimeError, match="loop_needed"):
        run_sync(forgot())


# ---------------------------------------------------------------------- deadlines through the edge


class _Slow:
    @tool
    def spin(self) -> str:
        """Loops in Python until interrupted."""
        while True:
            pass

    @tool(timeout_s=0.2)
    def nap(self) -> str:
        """Blocks in C."""
        time.sleep(5)
        return "late"

    @tool
    async def waits(self) -> str:
        """Awaits past its deadline."""
        await asyncio.sleep(5)
        return "late"


@pytest.mark.parametrize("name", ["spin", "nap", "waits"])
def test_sync_call_keeps_every_deadline(name):
    box = ToolBox(collect_tools(_Slow()), default_timeout_s=0.2)
    start = time.perf_counter()
    result = box.call(ToolCall(id="c", name=name, arguments={}))
    assert result.error is not None and result.error.kind == "timeout"
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------- sync overrides still count


def test_a_sync_on_answer_override_is_honoured_by_both_steps():
    from toolgym.envs.types import StopReason, Task, UserMessage

    class Chatty(toolgym.ToolEnv):
        def on_answer(self, content):
            if content == "more":
                return [UserMessage(content="go on")], None
            return super().on_answer(content)  # the default, without recursing through aon_answer

    def fresh():
        env = Chatty(tasks=[Task(id="t", instruction="x")])
        env.reset(seed=0)
        return env

    assert fresh().step("more")[4]["stop_reason"] is None
    assert asyncio.run(fresh().astep("more"))[4]["stop_reason"] is None
    assert fresh().step("done")[4]["stop_reason"] is StopReason.ANSWERED
    patched = fresh()
    patched.on_answer = lambda content: ([UserMessage(content="again")], None)  # an instance attribute, as tests do
    assert asyncio.run(patched.astep("done"))[4]["stop_reason"] is None
    assert patched.step("done")[4]["stop_reason"] is None
