"""``ToolEnv``: a gymnasium environment whose actions are assistant turns and whose
observations are new messages (tool results, user replies).

A new environment overrides at most three things: the ``@tool`` methods, ``setup`` (build the
world from a task: plain data, or an object with ``save``/``load``/``digest``, see
``toolgym.envs.world``) and ``sample_task`` (seeded task generation). Everything else, budgets,
error observations, snapshots and digests, is shared. Tool calls all pass through one async
method, ``call_tool``, which wrappers override (``toolgym.envs.wrappers.ToolCallWrapper``).

>>> import toolgym
>>> env = toolgym.make("toolgym/unitconv-v0")
>>> obs, info = env.reset(seed=0)
>>> obs, reward, terminated, truncated, info = env.step("<tool_call>{\\"name\\": \\"nope\\"}</tool_call>")
>>> obs.messages[0].error
'unknown_tool'
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium
import numpy as np
from pydantic import ValidationError

from toolgym.aio import run_sync
from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import digest
from toolgym.envs.dispatch import CallContext, CallTool, ToolBox, error_message, error_result, to_message
from toolgym.envs.formats import ParsedTurn, get_format
from toolgym.envs.formats.base import screen_structured
from toolgym.envs.spaces import ConversationSpace, TextAction
from toolgym.envs.tools import collect_tools
from toolgym.envs.types import (
    AssistantMessage,
    Message,
    Observation,
    StopReason,
    SystemMessage,
    Task,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
    trusted,
)
from toolgym.envs.world import as_world_state, copy_world
from toolgym.errors import ConfigError, ResetNeeded, did_you_mean

if TYPE_CHECKING:
    from toolgym.envs.users.base import SimulatedUser

DEFAULT_SYSTEM_PROMPT = "You are a careful assistant. Use the tools to do what the user asks, then answer briefly."


@dataclass
class EnvSnapshot:
    """Everything ``restore`` needs to put an environment back where ``snapshot`` found it."""

    task: Task
    world: Any
    messages: list[Message]
    turns: int
    tool_calls: int
    stop_reason: StopReason | None
    rng_state: dict[str, Any]
    final_answer: str
    episode_seed: int = 0
    """The seed of tool-call decisions (``CallContext.episode_seed``): a restored episode repeats them."""


class ToolEnv(gymnasium.Env):
    """Base class of tool-use environments.

    Args:
        tool_format: How assistant text encodes tool calls: a name in ``toolgym.envs.formats.FORMATS``
            ("hermes", "openai", "kimi_k2", "deepseek", "llama3_json", "glm45", "qwen3_coder", "harmony",
            "mistral"); for a model's own template see ``toolgym.envs.formats.detect_format``.
        tasks: Tasks to draw from when ``reset`` is given none (by the seeded RNG).
        user: A simulated user who answers the assistant's tool-free turns (None: solo mode,
            the first answer ends the episode). See ``toolgym.envs.users``.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}  # an instance attribute in gymnasium.Env, so not a ClassVar
    system_prompt: ClassVar[str] = DEFAULT_SYSTEM_PROMPT
    atomic_calls: ClassVar[bool] = True
    """A tool call that raises, is refused or times out leaves the world as it was: the world is
    saved (``save_world``) before each validated call and put back on failure. Domains whose
    tools check before they write may turn this off for speed (the shipped API domains do;
    ``benchmarks/fuzz_step.py`` verifies that failed calls leave their digest unchanged).
    Tools declared ``@tool(read_only=True)`` skip the save."""
    sync_tools_inline: ClassVar[bool] = False
    """This environment's sync tools only compute in Python (no sleeps, I/O, locks or long C
    calls), so they may run in the event loop's own thread under the deadline watchdog instead
    of on a worker thread (50-100 µs saved per call when an event loop drives ``astep``).
    Tools that declare ``timeout_s`` still run on workers, and a tool caught blocking past its
    deadline moves to them for good (see ``toolgym.envs.deadline``)."""

    _plain_calls: ClassVar[bool] = True
    """No subclass overrides ``call_tool``: ``astep`` may call the toolbox directly (set per class)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_calls = cls.call_tool is ToolEnv.call_tool

    def __init__(self, *, tool_format: str = "hermes", tasks: Sequence[Task] | None = None, render_mode: str | None = None, user: SimulatedUser | None = None):
        self.user = user
        self.format = get_format(tool_format)
        self.tasks = list(tasks) if tasks is not None else None
        self.render_mode = render_mode
        self.action_space = TextAction()
        self.observation_space = ConversationSpace()
        self.world: Any = None
        self.task: Task | None = None
        self.messages: list[Message] = []
        self.toolbox = ToolBox([])
        self._parse_tools: list[ToolSpec] | None = None
        """The tool specs ``format.parse`` needs (formats with ``typed_values``), fixed at reset."""
        self._turns = 0
        self._tool_calls = 0
        self._stop: StopReason | None = None
        self._final_answer = ""
        self._end_digest: str | None = None
        self._closed = False
        self.episode_seed = 0
        """Seed of this episode's tool-call decisions (``CallContext.episode_seed``)."""
        self._seed_root: int | None = None
        self._unseeded_resets = 0

    # ------------------------------------------------------------------ hooks to override

    def setup(self, task: Task) -> None:
        """Build the world for ``task``. Default: a deep copy of ``task.initial_state``."""
        self.world = copy.deepcopy(task.initial_state)

    def sample_task(self, rng: np.random.Generator) -> Task:
        """A task for ``reset`` without one. Default: draw from ``tasks`` given at construction."""
        if not self.tasks:
            raise ConfigError(
                f"{type(self).__name__}.reset() needs a task: pass options={{'task': ...}}, "
                "give tasks=[...] when making the env, or override sample_task()"
            )
        return self.tasks[int(rng.integers(len(self.tasks)))]

    # The world: a ``WorldState`` in ``self.world`` (or plain data) needs none of the four
    # methods below overridden. They stay overridable for envs written before the protocol.

    def world_state(self) -> Any:
        """The JSON-able world state that ``state_digest`` hashes (plain-data worlds). Default: ``self.world``."""
        return self.world

    def load_world(self, state: Any) -> None:
        """Inverse of ``world_state`` for ``restore`` (plain-data worlds). Default: ``self.world = state``."""
        self.world = state

    def save_world(self) -> Any:
        """An independent copy of everything the tools can change (for snapshots and rollbacks):
        the world's own ``save()`` (a ``WorldState``), else a deep copy of ``world_state()``."""
        own = as_world_state(self.world)
        return own.save() if own is not None else copy_world(self.world_state())

    def load_saved_world(self, saved: Any) -> None:
        """Put back a ``save_world`` copy (the copy itself stays reusable): the world's own
        ``load`` (a ``WorldState``), else ``load_world`` of a fresh copy."""
        own = as_world_state(self.world)
        if own is not None:
            own.load(saved)
        else:
            self.load_world(copy_world(saved))

    def tool_owners(self) -> list[Any]:
        """Objects whose ``@tool`` methods are this environment's tools. Default: the env itself."""
        return [self]

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> ToolResult:
        """Run one admitted tool call: the one seam every call goes through.

        Default: the toolbox (validation, deadlines, rollback of failed calls). Wrappers
        (``toolgym.envs.wrappers.ToolCallWrapper``) override this method only; ``ctx`` says
        where the call happens. Never raises for anything the model or the tool did.
        """
        return await self.toolbox.acall(call)

    def on_answer(self, content: str) -> tuple[list[Message], StopReason | None]:
        """The assistant answered without calling tools: ``aon_answer`` from sync code.

        A subclass may override this sync hook instead of ``aon_answer``; both steps honour it.
        """
        return run_sync(self._answer(content))

    async def aon_answer(self, content: str) -> tuple[list[Message], StopReason | None]:
        """The assistant answered without calling tools. Default: the episode ends.

        With a simulated ``user``, the user replies (new messages, no stop reason) or stops.
        """
        hook = self.on_answer
        if getattr(hook, "__func__", None) is not ToolEnv.on_answer:  # a subclass (or instance) set the sync hook
            return hook(content)
        return await self._answer(content)

    async def _answer(self, content: str) -> tuple[list[Message], StopReason | None]:
        # The default behaviour, apart from the override check (so super().on_answer() cannot recurse).
        if self.user is not None:
            if self.task is None:
                raise ResetNeeded("step() before reset(): there is no task for the user to answer")
            reply = await self.user.areply(self.task, self.messages, content)
            return reply.as_messages(), reply.stop
        return [], StopReason.ANSWERED

    def outcome_reward(self) -> float:
        """Reward given when the episode ends: 1.0 when the task's expected state digest and
        required outputs are met, else 0.0. Rubrics give richer scores; this is the env's own."""
        if self.task is None:
            return 0.0
        expected = self.task.expected
        if expected.state_digest is None and not expected.outputs:
            return 0.0
        current = self._end_digest or self.state_digest()
        if expected.state_digest is not None and expected.state_digest != current:
            return 0.0
        return float(all(out in self._final_answer for out in expected.outputs))

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        self._draw_episode_seed(seed)
        task = (options or {}).get("task")
        if task is None:
            task = self.sample_task(self.np_random)
        elif not isinstance(task, Task):
            try:
                task = Task.model_validate(task)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                field = ".".join(str(p) for p in first["loc"]) or "(task)"
                raise ConfigError(f"options['task'] is not a valid task: field '{field}': {first['msg']}") from None
        self.task = task
        self.setup(task)
        toolbox = ToolBox(
            [t for owner in self.tool_owners() for t in collect_tools(owner)],
            default_timeout_s=task.limits.tool_timeout_s,
        )
        _check_task_tools(task, toolbox)
        self.toolbox = toolbox.restrict(task.tools)
        if self.atomic_calls:
            self.toolbox.atomic = (self.save_world, self.load_saved_world)
        self.toolbox.sync_tools_inline = self.sync_tools_inline
        # only formats that write values as bare text need the specs (building them costs ~8k instructions)
        self._parse_tools = self.toolbox.specs() if getattr(self.format, "typed_values", False) else None
        self.messages = [SystemMessage(content=task.system_prompt or self.system_prompt), UserMessage(content=task.instruction)]
        self._turns = self._tool_calls = 0
        self._stop = None
        self._final_answer = ""
        self._end_digest = None
        self._closed = False
        obs = Observation(messages=list(self.messages), tools=self.toolbox.specs())
        return obs, {"task_id": task.id, "task": task}

    def _draw_episode_seed(self, seed: int | None) -> None:
        # gymnasium's rule for its RNG: reset(seed=s), then reset() ... repeats; never seeded: fresh.
        if seed is not None:
            self._seed_root, self._unseeded_resets = seed, 0
            self.episode_seed = seed
        elif self._seed_root is not None:
            self._unseeded_resets += 1
            self.episode_seed = seed_from(self._seed_root, self._unseeded_resets)
        else:
            self.episode_seed = int.from_bytes(os.urandom(8), "big")

    def step(self, action: str | ParsedTurn | AssistantMessage) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """``astep`` from sync code (no event loop unless a tool or user really waits)."""
        return run_sync(self.astep(action))

    async def astep(
        self, action: str | ParsedTurn | AssistantMessage, *, call_tool: CallTool | None = None,
    ) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply one assistant turn: run its tool calls (within budgets and deadlines), or hand
        a tool-free answer to ``aon_answer``; return the gymnasium 5-tuple.

        ``info`` holds what the episode loop keeps: ``assistant`` (the turn as parsed),
        ``stop_reason``, ``errors``, ``faults``, ``tool_calls``, ``results``, ``final_answer``
        (the last tool-free turn's content, "" before one), and ``state_digest`` once the
        episode is over.
        ``call_tool`` (set by wrappers) replaces ``self.call_tool`` for this turn's calls.
        """
        turn, assistant = self._begin_step(action)
        calls = turn.tool_calls
        admitted = self._admit(calls)
        results: list[ToolResult] = []
        faults: list[dict[str, Any]] = []
        if admitted is None and call_tool is None and self._plain_calls:
            acall = self.toolbox.acall  # nothing intercepts calls: straight to the toolbox, no context
            for call in calls:  # a plain loop: an async comprehension costs a coroutine
                results.append(await acall(call))
        elif calls:
            if admitted is None:
                admitted = [(c, None) for c in calls]
            caller = call_tool or self.call_tool
            ctx = CallContext(self.episode_seed, len(self.messages) - 1, [c for c, r in admitted if r is None],
                              self.toolbox.tools, self.toolbox.default_timeout_s, faults=faults)
            for call, refused in admitted:
                if refused is None:
                    results.append(await caller(call, ctx))
                    ctx.index += 1
                else:
                    results.append(refused)
        reply = await self.aon_answer(turn.content) if self._is_answer(turn) else None
        return self._finish_step(turn, assistant, results, reply, faults)

    def close(self) -> None:
        self._closed = True

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{m.role}] {getattr(m, 'content', '')}" for m in self.messages)

    # ------------------------------------------------------------------ forking and hashing

    def state_digest(self) -> str:
        """Canonical hash of the world state (same state, same digest, on any machine): the
        world's own ``digest()`` (a ``WorldState``), else the hash of ``world_state()``."""
        own = as_world_state(self.world)
        return own.digest() if own is not None else digest(self.world_state())

    def snapshot(self) -> EnvSnapshot:
        """Capture the world, conversation, budgets and RNG so ``restore`` can fork from here."""
        if self.task is None:
            raise ResetNeeded("snapshot() before reset(): there is no world to capture yet")
        return EnvSnapshot(
            task=self.task,
            world=self.save_world(),
            messages=list(self.messages),
            turns=self._turns,
            tool_calls=self._tool_calls,
            stop_reason=self._stop,
            rng_state=copy.deepcopy(dict(self.np_random.bit_generator.state)),
            final_answer=self._final_answer,
            episode_seed=self.episode_seed,
        )

    def restore(self, snap: EnvSnapshot) -> None:
        """Return to a snapshot (taken from this env or a sibling of the same class)."""
        if self.task is None or self.task.id != snap.task.id:
            self.reset(options={"task": snap.task})
        self.task = snap.task
        self.load_saved_world(snap.world)
        self.messages = list(snap.messages)
        self._turns, self._tool_calls, self._stop = snap.turns, snap.tool_calls, snap.stop_reason
        self._final_answer = snap.final_answer
        self.episode_seed = snap.episode_seed
        self.np_random.bit_generator.state = snap.rng_state  # the setter reads the values; it keeps no reference
        self._end_digest = None
        self._closed = False

    # ------------------------------------------------------------------ internals

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the current episode ended, or None while it runs."""
        return self._stop

    @property
    def final_answer(self) -> str:
        """The content of the assistant's last tool-free turn ("" if none yet)."""
        return self._final_answer

    def _begin_step(self, action: Any) -> tuple[ParsedTurn, AssistantMessage]:
        if self.task is None or self._closed:
            raise ResetNeeded("step() before reset(): call env.reset() first")
        if self._stop is not None:
            raise ResetNeeded(f"the episode already ended ({self._stop.value}); call env.reset() to start another")
        self._turns += 1
        if isinstance(action, str):
            turn = self.format.parse(action, f"call_{self._turns}_", self._parse_tools)
            raw: str | None = action
        elif isinstance(action, ParsedTurn):
            turn, raw = screen_structured(action), None
        elif isinstance(action, AssistantMessage):
            turn, raw = screen_structured(ParsedTurn(content=action.content, tool_calls=action.tool_calls, reasoning=action.reasoning)), action.raw
        else:
            raise TypeError(f"step() takes assistant text, a ParsedTurn or an AssistantMessage, got {type(action).__name__}")
        assistant = trusted(AssistantMessage, {"role": "assistant", "content": turn.content, "tool_calls": turn.tool_calls, "raw": raw, "reasoning": turn.reasoning})
        self.messages.append(assistant)
        return turn, assistant

    def _admit(self, calls: list[ToolCall]) -> list[tuple[ToolCall, ToolResult | None]] | None:
        """Apply the per-turn and per-episode call budgets; refused calls get their error now.

        None when every call fits (the common case: no list of pairs to build).
        """
        limits = self.task.limits  # type: ignore[union-attr]  # only called after reset (task set)
        n = len(calls)
        if n <= limits.max_calls_per_turn and self._tool_calls + n <= limits.max_tool_calls:
            self._tool_calls += n
            return None
        admitted: list[tuple[ToolCall, ToolResult | None]] = []
        for i, call in enumerate(calls):
            if i >= limits.max_calls_per_turn:
                admitted.append((call, error_result(call, "budget_exceeded", f"at most {limits.max_calls_per_turn} calls per turn; this one was not run")))
            elif self._tool_calls >= limits.max_tool_calls:
                admitted.append((call, error_result(call, "budget_exceeded", f"the episode's budget of {limits.max_tool_calls} tool calls is spent")))
                self._stop = StopReason.MAX_TOOL_CALLS
            else:
                self._tool_calls += 1
                admitted.append((call, None))
        return admitted

    def _is_answer(self, turn: ParsedTurn) -> bool:
        """A turn without calls or parse errors, in a running episode: the assistant answered."""
        return not turn.tool_calls and not turn.errors and self._stop is None

    def _finish_step(
        self, turn: ParsedTurn, assistant: AssistantMessage, results: list[ToolResult],
        reply: tuple[list[Message], StopReason | None] | None, faults: list[dict[str, Any]],
    ) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        limits = self.task.limits  # type: ignore[union-attr]  # only called after reset (task set)
        new: list[Message] = []
        errors: dict[str, int] = {}
        if turn.errors:  # checked first: an empty loop costs more than the test
            for i, err in enumerate(turn.errors):
                errors["parse_error"] = errors.get("parse_error", 0) + 1
                text = err.message + (f"\nOffending text: {err.snippet}" if err.snippet else "")
                new.append(error_message(f"parse_error_{self._turns}_{i}", "", "parse_error", text, limits.max_output_chars))
        for i, result in enumerate(results):
            # to_message may turn an output into an error (not JSON): keep the result it returns,
            # so info["results"] and the observation always agree.
            result, message = to_message(result, limits.max_output_chars)
            results[i] = result
            if result.error is not None:
                errors[result.error.kind] = errors.get(result.error.kind, 0) + 1
            new.append(message)
        if reply is not None:  # astep found the turn an answer and asked aon_answer
            self._final_answer = turn.content
            replies, stop = reply
            new.extend(replies)
            self._stop = stop
        if self._stop is None and self._turns >= limits.max_turns:
            self._stop = StopReason.MAX_TURNS
        self.messages.extend(new)
        stop = self._stop
        info: dict[str, Any] = {"turn": self._turns, "stop_reason": stop, "tool_calls": len(turn.tool_calls), "errors": errors,
                                "results": results, "assistant": assistant, "faults": faults, "final_answer": self._final_answer}
        if stop is None:
            return trusted(Observation, {"messages": new, "tools": []}), 0.0, False, False, info
        terminated = stop.terminated
        # The episode is over and the world can no longer change: hash it once for info,
        # the reward and the rollout loop.
        self._end_digest = info["state_digest"] = self.state_digest()
        return trusted(Observation, {"messages": new, "tools": []}), self.outcome_reward(), terminated, not terminated, info


def _check_task_tools(task: Task, toolbox: ToolBox) -> None:
    """A task may only offer tools the environment has: a typo would silently offer none."""
    if task.tools is None:
        return
    unknown = [name for name in task.tools if name not in toolbox.tools]
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"task {task.id!r}: field 'tools' names {name!r}, which this environment does not have."
            f"{did_you_mean(name, toolbox.tools)} Its tools: {', '.join(toolbox.tools) or 'none'}."
        )


def tool_env(env: Any) -> ToolEnv:
    """The ``ToolEnv`` inside ``env`` (itself, or the innermost env of a wrapper chain).

    gymnasium types ``unwrapped`` as a plain ``Env``; this gives callers the tool env's API
    with its type, and a clear error for anything else.

    Raises:
        TypeError: ``env`` does not wrap a ``ToolEnv``.
    """
    base = getattr(env, "unwrapped", env)
    if not isinstance(base, ToolEnv):
        raise TypeError(f"expected a toolgym ToolEnv (or a wrapper of one), got {type(base).__name__}")
    return base
