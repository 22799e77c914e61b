"""``LLMSimulator``: a policy (local model or OpenAI-compatible endpoint) plays the API.

The policy sees the tool's spec and return schema, the simulated state and the episode's
earlier calls, and answers ``{"output": ...}`` or ``{"error": "..."}``. Answers are checked
against the return schema; an unusable answer is retried with the problem stated, and after
the last attempt it is a ``SimulatorError`` (infrastructure, counted), never the agent's fault.

Answers are cached by (tool, arguments, state digest): a replay of the same episode meets the
same states and so gets exactly the same outputs, without asking the policy again. Give the
cache a path to keep it across runs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolgym.aio import loop_needed, run_sync
from toolgym.envs import safejson
from toolgym.envs.canonical import seed_from
from toolgym.envs.digest import canonical_json, digest
from toolgym.envs.sim.base import SimulatedApiError, SimulatorError
from toolgym.envs.sim.schema import problems
from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.sim.state import SimState
from toolgym.envs.sim.text import invalid_text_at
from toolgym.envs.types import SystemMessage, UserMessage
from toolgym.policy import Policy, PolicyRequest, SamplingParams

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


@dataclass
class SimStats:
    """Counters of one simulator (all episodes that share it)."""

    calls: int = 0
    cache_hits: int = 0
    policy_calls: int = 0
    errors: int = 0
    """Calls that ended as ``SimulatorError``."""


class SimCache:
    """Simulated answers by key, in memory and optionally appended to a JSONL file.

    Args:
        path: File to load from and append to (None: memory only).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            # split("\n"), not splitlines(): U+2028 and friends may sit inside a JSON string.
            for lineno, line in enumerate(self.path.read_text(encoding="utf-8").split("\n"), start=1):
                if not line.strip():
                    continue
                try:
                    entry = safejson.loads(line, safejson.FILE_LIMITS)
                    self._entries[entry["key"]] = entry["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise SimulatorError(f"{self.path}:{lineno}: not a simulator cache line (expected {{\"key\": ..., \"answer\": ...}}); delete the file to start over") from None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, Any] | None:
        answer = self._entries.get(key)
        return copy.deepcopy(answer) if answer is not None else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self._entries[key] = copy.deepcopy(answer)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                # Key order kept (not canonical): a replay must render outputs byte for byte.
                fh.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=True, separators=(",", ":")) + "\n")


class LLMSimulator:
    """Simulates tools with any ``Policy``.

    Args:
        policy: Answers the simulation prompts (``generate`` is awaited with one request).
        cache: Where answers are kept (default: a fresh in-memory cache).
        attempts: Policy calls per tool call before giving up with ``SimulatorError``.
        history: Earlier calls shown in the prompt (the newest ones).
        sampling: Sampling of the simulator's turns (default: greedy, 512 new tokens).
        namespace: Part of every cache key, so simulators with different policies can share a file.
    """

    is_async = True

    def __init__(
        self,
        policy: Policy,
        *,
        cache: SimCache | None = None,
        attempts: int = 2,
        history: int = 20,
        sampling: SamplingParams | None = None,
        namespace: str = "default",
    ):
        self.policy = policy
        self.cache = cache if cache is not None else SimCache()
        self.attempts = attempts
        self.history = history
        self.sampling = sampling or SamplingParams(temperature=0.0, max_new_tokens=512)
        self.namespace = namespace
        self.stats = SimStats()

    def cache_key(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> str:
        """The key of this call: tool, arguments and the digest of the state it meets."""
        return digest({"ns": self.namespace, "tool": tool.name, "arguments": arguments, "state": digest(state)})

    async def asimulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """The tool's output. Raises ``SimulatedApiError`` when the simulated API refuses the call."""
        self.stats.calls += 1
        key = self.cache_key(tool, arguments, state)
        answer = self.cache.get(key)
        if answer is not None:
            self.stats.cache_hits += 1
        else:
            answer = await self._ask(tool, arguments, state, key)
            self.cache.put(key, answer)
        if "error" in answer:
            raise SimulatedApiError(str(answer["error"]))
        return answer["output"]

    def simulate(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState) -> Any:
        """``asimulate`` from sync code (``toolgym.aio.run_sync``: on an event loop only on a cache miss)."""
        return run_sync(self.asimulate(tool, arguments, state))

    async def _ask(self, tool: CompiledTool, arguments: dict[str, Any], state: SimState, key: str) -> dict[str, Any]:
        messages: list[Any] = [SystemMessage(content=self._brief(tool, state)), UserMessage(content=canonical_json({"name": tool.name, "arguments": arguments}))]
        problem, text = "", ""
        for attempt in range(self.attempts):
            request = PolicyRequest(episode_id=f"simulator/{key[:16]}", messages=messages, seed=seed_from(key, attempt) >> 1, sampling=self.sampling)
            self.stats.policy_calls += 1
            await loop_needed()
            try:
                (turn,) = await self.policy.generate([request])
            except Exception as exc:  # policies should not raise; if one does, it is still infrastructure
                self.stats.errors += 1
                raise SimulatorError(f"the simulator's policy raised {type(exc).__name__}: {exc}") from exc
            if turn.error is not None:
                self.stats.errors += 1
                raise SimulatorError(f"the simulator's policy failed ({turn.error.kind}): {turn.error.message}")
            text = turn.text
            answer, problem = read_answer(text, tool)
            if answer is not None:
                return answer
            messages = [*messages, UserMessage(content=f"That reply was unusable: {problem}. Reply again with the JSON object only.")]
        self.stats.errors += 1
        raise SimulatorError(
            f"the simulator gave no valid output for {tool.name!r} in {self.attempts} attempt(s): {problem}; reply began {text[:120]!r}"
        )

    def _brief(self, tool: CompiledTool, state: SimState) -> str:
        calls = [r.model_dump(exclude_none=True) for r in state.log[-self.history:]]
        return "\n".join([
            f"You simulate the API behind the tool {tool.name!r}. Be realistic and consistent with the state and the earlier calls.",
            ('Reply with one JSON object and nothing else: {"output": <what the tool returns>} or, when the real API would '
             'refuse the call (unknown id, invalid request), {"error": "<message>"}.'),
            f"Tool: {canonical_json(tool.tool.spec.model_dump())}",
            f"The output must fit this JSON Schema: {canonical_json(tool.returns)}",
            f"State: {canonical_json({'data': state.data, 'entities': state.entities})}",
            f"Earlier calls, oldest first: {canonical_json(calls)}",
        ])


def read_answer(text: str, tool: CompiledTool) -> tuple[dict[str, Any] | None, str]:
    """Parse a simulator reply: (answer, "") when usable, else (None, what is wrong)."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return None, "no JSON object found"
    try:
        value = safejson.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at position {exc.pos})"
    where = invalid_text_at(value, root="reply")
    if where is not None:
        return None, f"{where} holds a lone surrogate (a \\ud800-style escape that is not valid Unicode text)"
    if not isinstance(value, dict) or len(value) != 1 or not ({"output", "error"} & set(value)):
        return None, 'the object must have exactly one key, "output" or "error"'
    if "error" in value:
        return {"error": str(value["error"])[:500]}, ""
    bad = problems(tool.returns_validator, value["output"])
    if bad:
        return None, "the output breaks the return schema: " + "; ".join(bad)
    return {"output": value["output"]}, ""
