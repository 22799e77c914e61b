"""Text UTF-8 cannot carry (lone surrogates): broken backend output, or the model's own mistake."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import FakePolicy, act, notes_tools

from toolgym.envs.sim import LLMSimulator, SimulatedApiError, SimulatedToolEnv
from toolgym.envs.sim.text import invalid_text_at
from toolgym.envs.types import Task

TASK = Task(id="t", instruction="Use the API.")
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
# st.text() never draws surrogates, so these are valid text; a surrogate is then put in on purpose.
TEXT = st.text(max_size=6)
KEYS = st.text("abcdefgh", min_size=1, max_size=4)
TREES = st.recursive(st.one_of(TEXT, st.integers(), st.none(), st.booleans()),
                     lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=3)), max_leaves=10)


def spoil(text: str, surrogate: str, at: int) -> str:
    """``text`` with ``surrogate`` put in at position ``at`` (modulo its length + 1)."""
    i = at % (len(text) + 1)
    return text[:i] + surrogate + text[i:]


def places(node: Any, path: str) -> list[tuple[str, tuple]]:
    """(expected report, route) of every string value and key in ``node``."""
    out: list[tuple[str, tuple]] = []
    if isinstance(node, str):
        out.append((path, ()))
    elif isinstance(node, dict):
        for key, child in node.items():
            out.append((f"a key of {path}", ("key", key)))
            out += [(where, (key, *route)) for where, route in places(child, f"{path}.{key}")]
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += [(where, (i, *route)) for where, route in places(child, f"{path}[{i}]")]
    return out


def spoiled(node: Any, route: tuple, surrogate: str, at: int) -> Any:
    if not route:
        return spoil(node, surrogate, at)
    if route[0] == "key":
        return {(spoil(k, surrogate, at) if k == route[1] else k): v for k, v in node.items()}
    head, rest = route[0], route[1:]
    if isinstance(node, dict):
        return {k: (spoiled(v, rest, surrogate, at) if k == head else v) for k, v in node.items()}
    return [spoiled(v, rest, surrogate, at) if i == head else v for i, v in enumerate(node)]


@settings(max_examples=80, deadline=None)
@given(tree=TREES, surrogate=SURROGATES, pick=st.integers(0, 10**6), at=st.integers(0, 10))
def test_the_first_invalid_string_or_key_is_found_wherever_it_is(tree, surrogate, pick, at):
    assert invalid_text_at(tree) is None
    spots = places(tree, "output")
    if not spots:
        return
    where, route = spots[pick % len(spots)]
    assert invalid_text_at(spoiled(tree, route, surrogate, at)) == where


NOTE = {"id": "n1", "title": "milk", "body": "2 l", "created_at": "2025-01-01T00:00:00Z", "stars": 2}


@settings(max_examples=25, deadline=None)
@given(field=st.sampled_from(["id", "title", "body", "key", "error"]), surrogate=SURROGATES, at=st.integers(0, 5), ascii_only=st.booleans())
def test_a_lone_surrogate_in_an_llm_simulators_reply_is_a_counted_simulator_error(field, surrogate, at, ascii_only):
    if field == "error":
        answer: dict[str, Any] = {"error": spoil("no such note", surrogate, at)}
    elif field == "key":
        answer = {"output": {**NOTE, spoil("extra", surrogate, at): 1}}
    else:
        answer = {"output": {**NOTE, field: spoil(NOTE[field], surrogate, at)}}
    reply = json.dumps(answer, ensure_ascii=ascii_only)  # as a \\udXXX escape, or the raw character
    sim = LLMSimulator(FakePolicy(lambda r: reply), attempts=2)
    env = SimulatedToolEnv(notes_tools(), sim)
    env.reset(seed=0, options={"task": TASK})
    message, info = act(env, "create_note", title="milk")
    assert message.error == "simulator_error" and "holds a lone surrogate" in message.content
    assert info["errors"] == {"simulator_error": 1} and env.simulator_errors == 1 and sim.stats.errors == 1
    assert len(sim.cache) == 0 and env.world.log == []
    message.content.encode("utf-8")  # what the model sees is valid text


class EchoSimulator:
    """A simulator of one's own that answers with whatever it was set to (and counts calls)."""

    is_async = False

    def __init__(self, answer: Any = None, error: str | None = None):
        self.answer, self.error, self.calls = answer, error, 0

    def simulate(self, tool, arguments, state):
        self.calls += 1
        if self.error is not None:
            raise SimulatedApiError(self.error)
        return self.answer

    async def asimulate(self, tool, arguments, state):
        return self.simulate(tool, arguments, state)


@settings(max_examples=25, deadline=None)
@given(tree=TREES, surrogate=SURROGATES, pick=st.integers(0, 10**6), at=st.integers(0, 10), as_error=st.booleans())
def test_any_simulators_output_or_error_holding_a_lone_surrogate_is_refused_as_broken_output(tree, surrogate, pick, at, as_error):
    spots = places(tree, "output")
    bad = spoil("gone", surrogate, at) if as_error or not spots else spoiled(tree, spots[pick % len(spots)][1], surrogate, at)
    sim = EchoSimulator(error=bad) if as_error or not spots else EchoSimulator(answer=bad)
    env = SimulatedToolEnv(notes_tools(), sim)
    env.reset(seed=0, options={"task": TASK})
    message, info = act(env, "get_weather", city="Oslo")
    assert message.error == "simulator_error" and "holds a lone surrogate" in message.content, message.content
    assert info["errors"] == {"simulator_error": 1} and env.world.log == []


@settings(max_examples=25, deadline=None)
@given(title=TEXT, surrogate=SURROGATES, at=st.integers(0, 10), in_key=st.booleans())
def test_a_lone_surrogate_in_the_models_arguments_is_the_models_error_and_reaches_no_simulator(title, surrogate, at, in_key):
    sim = EchoSimulator(answer={"id": "n1", "title": title, "created_at": "2025-01-01T00:00:00Z", "stars": 1})
    env = SimulatedToolEnv(notes_tools(), sim)
    env.reset(seed=0, options={"task": TASK})
    arguments = {"title": title, spoil("body", surrogate, at): "x"} if in_key else {"title": spoil(title, surrogate, at)}
    message, info = act(env, "create_note", **arguments)
    assert message.error == "invalid_arguments" and "holds a lone surrogate" in message.content
    assert ("a key of arguments" if in_key else "arguments.title") in message.content
    assert sim.calls == 0 and env.simulator_errors == 0 and env.stop_reason is None
    message.content.encode("utf-8")
