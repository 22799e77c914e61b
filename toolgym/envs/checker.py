"""``check_env``: the one test every environment passes.

It proves seeded determinism (of resets *and* of real tool calls: the task's gold actions, or
schema-generated valid calls, stepped after two identical seeded resets), tool schemas valid
against the JSON Schema metaschema, that gold actions call real tools and reach the task's
expected digest, that bad actions become error observations, that snapshots restore exactly,
that stepping before reset is refused, and that ``close`` is idempotent.
``tests/envs/test_registry.py`` runs it over the whole registry.
"""

from __future__ import annotations

import random
from typing import Any

from toolgym.envs.env import ToolEnv
from toolgym.envs.types import Observation, Task, ToolCall, ToolSpec
from toolgym.errors import ResetNeeded

_NOT_THE_GOLDS_FAULT = ("injected_fault", "rate_limited", "simulator_error", "timeout")
VALID_CALLS_PER_TOOL = 2
"""Schema-generated calls per tool when the task has no gold actions."""

GARBAGE = (
    "<tool_call>{not json}</tool_call>",
    "<tool_call>[1, 2]</tool_call>",
    "<tool_call>unclosed",
    "\x00\ufffd garbage <|tool_calls_section_begin|>",
    '{"tool_calls": [{"function": 7}]}',
)


class EnvCheckError(AssertionError):
    """An environment broke one of toolgym's contracts."""


def _fail(what: str) -> None:
    raise EnvCheckError(what)


def check_env(env: ToolEnv, seed: int = 0, task: Any = None) -> None:
    """Check ``env`` against the environment contract; raise ``EnvCheckError`` on the first break.

    Args:
        env: A fresh environment.
        seed: Seed for the determinism checks.
        task: Task to reset with (default: the env's own seeded sampling).
    """
    options = {"task": task} if task is not None else None
    try:
        env.step("hello")
        _fail("step() before reset() must raise ResetNeeded")
    except ResetNeeded:
        pass

    obs1, _ = env.reset(seed=seed, options=options)
    digest1 = env.state_digest()
    obs2, _ = env.reset(seed=seed, options=options)
    if obs1.model_dump() != obs2.model_dump() or digest1 != env.state_digest():
        _fail("reset(seed=s) twice gave different observations or state digests")
    _check_observation(obs1)
    for spec in obs1.tools:
        _check_schema(spec)
    _check_real_calls(env, seed, options)
    obs1, _ = env.reset(seed=seed, options=options)

    snap = env.snapshot()
    bad_calls = _bad_calls(env, obs1.tools)
    for action in GARBAGE + bad_calls:
        if env.stop_reason is not None:
            env.restore(snap)
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except Exception as exc:
            _fail(f"step({action!r}) raised {type(exc).__name__}: {exc}; bad actions must become error observations")
        _check_observation(obs)
        if not isinstance(reward, float) or not isinstance(info, dict):
            _fail("step() must return a float reward and a dict info")
        if terminated and truncated:
            _fail("an episode cannot be both terminated and truncated")
        if action in bad_calls and not any(getattr(m, "error", None) for m in obs.messages):
            _fail(f"bad call {action!r} produced no error observation")

    env.restore(snap)
    if env.state_digest() != digest1:
        _fail("restore(snapshot) did not bring back the state digest")
    a = env.step(bad_calls[0])[0]
    env.restore(snap)
    b = env.step(bad_calls[0])[0]
    if a.model_dump() != b.model_dump():
        _fail("the same action after the same restore gave different observations")

    env.close()
    env.close()
    try:
        env.step("hello")
        _fail("step() after close() must raise ResetNeeded")
    except ResetNeeded:
        pass


def _check_real_calls(env: ToolEnv, seed: int, options: dict[str, Any] | None) -> None:
    """Step the same valid calls after two identical seeded resets; both runs must agree, and
    gold actions must call real tools with fitting arguments and reach the expected digest."""
    env.reset(seed=seed, options=options)
    task = env.task
    assert task is not None
    actions = _gold_or_generated(env, task, seed)
    first = _play(env, seed, options, actions)
    second = _play(env, seed, options, actions)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        if a != b:
            name = actions[i].name if i < len(actions) else "?"
            _fail(f"nondeterministic: after two identical seeded resets, step {i + 1} (a call to {name!r}) "
                  "gave different observations or state digests; draw randomness only from reset(seed=...)")
    if not task.gold_actions:
        return
    for i, (_, errors, _) in enumerate(first):
        for kind in ("unknown_tool", "invalid_arguments"):
            if errors.get(kind):
                _fail(f"task {task.id!r}: gold action {i + 1} ({actions[i].name!r}) failed with {kind}: "
                      f"{first[i][0][:300]}")
    expected = task.expected.state_digest
    # A wrapper that injects faults (or a flaky backend) may stop gold from getting there: only a
    # replay whose calls all went through must reach the expected digest.
    disturbed = any(errors.get(kind) for _, errors, _ in first for kind in _NOT_THE_GOLDS_FAULT)
    if expected is not None and first and not disturbed and first[-1][2] != expected:
        _fail(f"task {task.id!r}: the gold actions end in state digest {first[-1][2]}, "
              f"but expected.state_digest is {expected}")


def _gold_or_generated(env: ToolEnv, task: Task, seed: int) -> list[ToolCall]:
    if task.gold_actions:
        return [ToolCall(id=f"gold_{i}", name=a.name, arguments=a.arguments) for i, a in enumerate(task.gold_actions)]
    from toolgym.envs.sim.generate import ValueGenerator  # lazy: sim builds on this module's package

    rng = random.Random(seed)
    calls: list[ToolCall] = []
    for spec in env.toolbox.specs():
        for _ in range(VALID_CALLS_PER_TOOL):
            try:
                args = ValueGenerator(spec.function.parameters).generate(rng)
            except Exception:  # a schema the generator cannot serve: the call is skipped, not the check
                continue
            calls.append(ToolCall(id=f"gen_{len(calls)}", name=spec.name, arguments=args if isinstance(args, dict) else {}))
    return calls


def _play(env: ToolEnv, seed: int, options: dict[str, Any] | None, actions: list[ToolCall]) -> list[tuple[str, dict[str, int], str]]:
    """(observation JSON, error counts, state digest) after each action, from a fresh seeded reset."""
    env.reset(seed=seed, options=options)
    out = []
    for call in actions:
        if env.stop_reason is not None:
            break
        try:
            obs, _, _, _, info = env.step(env.format.render_turn("", [call]))
        except Exception as exc:
            _fail(f"step() with a valid call to {call.name!r} raised {type(exc).__name__}: {exc}")
        out.append((obs.model_dump_json(), dict(info["errors"]), env.state_digest()))
    return out


def _bad_calls(env: ToolEnv, tools: list[ToolSpec]) -> tuple[str, ...]:
    """An unknown tool and wrong arguments to the env's own first tool, in the env's format."""
    calls = [ToolCall(id="c0", name="no_such_tool", arguments={})]
    if tools:
        calls.append(ToolCall(id="c1", name=tools[0].name, arguments={"__bogus__": 1}))
    return tuple(env.format.render_turn("", [c]) for c in calls)


def _check_observation(obs: Any) -> None:
    if not isinstance(obs, Observation):
        _fail(f"observations must be Observation, got {type(obs).__name__}")


def _check_schema(spec: ToolSpec) -> None:
    from toolgym.envs.sim.schema import SchemaError, compile_schema  # lazy: see _gold_or_generated

    params = spec.function.parameters
    try:
        compile_schema(params, where=f"parameters of {spec.name!r}", require_object=True)
    except SchemaError as exc:
        _fail(f"tool {spec.name!r}: {exc}")
    if params.get("type") != "object" or not isinstance(params.get("properties", {}), dict):
        _fail(f"tool {spec.name!r}: parameters must be a JSON Schema object with properties")
    for pname in params.get("required", []):
        if pname not in params.get("properties", {}):
            _fail(f"tool {spec.name!r}: required parameter {pname!r} has no property schema")
    if not spec.function.description:
        _fail(f"tool {spec.name!r} has no description")
