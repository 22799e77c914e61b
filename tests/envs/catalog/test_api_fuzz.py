"""Fuzzing the shipped API domains: 10,000 random or malformed calls each, zero crashes.

Every call must come back as an observation: an error with a kind, or (when the random call
happens to be valid) a JSON result. The world must stay a valid instance of its state model.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest
from api_domains import DOMAINS, make

from toolgym.envs.formats import ParsedTurn
from toolgym.envs.types import Limits, ToolCall, ToolMessage

CALLS = 10_000
GARBAGE = (
    "<tool_call>",
    "</tool_call>",
    "{",
    "}",
    '"name"',
    '"arguments"',
    ":",
    ",",
    "[",
    "]",
    "null",
    "\x00",
    "\ufffd",
    "<|im_end|>",
)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return rng.randint(-(10**12), 10**12)
    if kind == 1:
        return rng.choice((0, 1, -1, 2**63, 0.5, -1e308))
    if kind == 2:
        return rng.choice((True, False, None))
    if kind == 3:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.choice(
            ("", " ", "#W0000000", "2025-02-30", "25:99", "evt_1000", "C000000", "card_5000", "a" * 5000, "💥")
        )
    if kind in (5, 6):
        return rng.choice(
            ("accepted", "fraud", "no longer needed", "inbox", "USB", "TX", "12345", "09:30", "2025-03-04")
        )
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(("a", "id", "x")): random_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def random_call(rng: random.Random, specs: dict[str, dict[str, Any]], known: list[Any], gold: list[Any]) -> ToolCall:
    """A call to a real or made-up tool with arguments that may be right, wrong, missing or extra."""
    if rng.random() < 0.25:  # a gold call, sometimes with one argument swapped: often valid
        action = rng.choice(gold)
        args = dict(action.arguments)
        if args and rng.random() < 0.5:
            args[rng.choice(sorted(args))] = rng.choice(known) if rng.random() < 0.5 else random_value(rng)
        return ToolCall(id="g", name=action.name, arguments=args)
    names = list(specs)
    name = (
        rng.choice(names)
        if rng.random() < 0.85
        else rng.choice(["", "delete_everything", names[0].upper(), names[0] + "_", "x" * 70])
    )
    params = specs.get(name, {}).get("properties", {})
    args: dict[str, Any] = {}
    for pname in params:
        roll = rng.random()
        if roll < 0.55 and known:
            args[pname] = rng.choice(known)  # a value seen in the world: often a valid id
        elif roll < 0.85:
            args[pname] = random_value(rng)
        # else: leave it out
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        args[rng.choice(("extra", "confirm ", "order", "__class__"))] = random_value(rng)
    return ToolCall(id="f", name=name, arguments=args)


def random_action(
    rng: random.Random, env: Any, specs: dict[str, dict[str, Any]], known: list[Any], gold: list[Any]
) -> Any:
    roll = rng.random()
    if roll < 0.7:
        calls = [random_call(rng, specs, known, gold) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        return env.format.render_turn("", calls)
    if roll < 0.8:  # already-parsed calls may carry values JSON cannot even hold
        return ParsedTurn(
            tool_calls=[ToolCall(id="p", name=rng.choice(list(specs)), arguments={"x": object(), "order_id": {1, 2}})]
        )
    if roll < 0.95:
        return "".join(rng.choice(GARBAGE) + rng.choice(string.printable) for _ in range(rng.randrange(1, 20)))
    return rng.choice(
        (
            "",
            '<tool_call>{"name": 3}</tool_call>',
            "<tool_call>" * 50,
            '<tool_call>{"name": "x", "arguments": "[1]"}</tool_call>',
        )
    )


def harvest(value: Any, out: set[Any]) -> None:
    """Strings and numbers of the world, so random calls often hit real ids."""
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            harvest(v, out)
    elif isinstance(value, list):
        for v in value:
            harvest(v, out)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        out.add(value)


def start(env: Any, task: Any) -> Any:
    """Reset, then run the gold first action (the identity check in retail and banking), so
    that random calls can reach the tools behind it."""
    obs, _ = env.reset(options={"task": task})
    first = task.gold_actions[0]
    env.step(env.format.render_turn("", [ToolCall(id="g", name=first.name, arguments=first.arguments)]))
    return obs


@pytest.mark.parametrize("env_id", DOMAINS)
def test_ten_thousand_random_calls_never_crash(env_id):
    rng = random.Random(f"fuzz/{env_id}")
    env = make(env_id)
    task = type(env).eval_tasks()[0]
    # Budgets large enough that the episode runs through all calls and the state keeps evolving.
    task = task.model_copy(
        update={"limits": Limits(max_turns=CALLS + 1, max_tool_calls=10 * CALLS, max_calls_per_turn=8)}
    )
    obs = start(env, task)
    specs = {t.name: t.function.parameters for t in obs.tools}
    seen: set[Any] = set()
    harvest(task.initial_state, seen)
    known = sorted(seen, key=repr)
    answered = errors = ok = 0
    while answered < CALLS:
        action = random_action(rng, env, specs, known, task.gold_actions)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:  # a plain-text turn ends the episode: continue from a fresh reset
            start(env, task)
            continue
        tool_messages = [m for m in obs.messages if isinstance(m, ToolMessage)]
        assert len(tool_messages) == info["tool_calls"] + info["errors"].get("parse_error", 0)
        for message in tool_messages:
            answered += 1
            if message.error is None:
                ok += 1
                json.loads(message.content)
            else:
                errors += 1
                assert message.content.startswith(f"Error ({message.error})")
    assert ok > 300 and errors > CALLS // 2  # the fuzz reached real tools, and mostly failed politely
    # No tool left the world in a shape its own model would reject.
    api = env.api
    type(api.state).model_validate(api.state.model_dump())
    assert len(env.state_digest()) == 32
