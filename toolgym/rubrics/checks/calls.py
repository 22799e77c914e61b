"""Checks on the calls the model made: which tools, with what arguments, how cleanly, how many."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.types import Task
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.checks.base import Arguments
from toolgym.rubrics.matchers import MatchMode, arguments_match
from toolgym.rubrics.trajectory import attempted_calls, call_records, malformed_calls


class CallPattern(BaseModel):
    """A tool call to look for: a name and an optional argument matcher."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: Arguments = None
    match: MatchMode = "subset"


def _count(episode: Episode, pattern: CallPattern, succeeded: bool) -> int:
    return sum(
        1
        for rec in call_records(episode)
        if rec.call.name == pattern.name
        and (rec.ok or not succeeded)
        and arguments_match(rec.call.arguments, pattern.arguments, pattern.match)
    )


def tool_called(
    task: Task,
    episode: Episode,
    env: Any = None,
    *,
    name: str,
    arguments: Arguments = None,
    match: MatchMode = "subset",
    min_times: int = 1,
    succeeded: bool = True,
) -> float:
    """1.0 when ``name`` was called at least ``min_times`` times with matching arguments.

    Args:
        name: Tool name.
        arguments: Argument matcher (see ``toolgym.rubrics.matchers``); None matches any.
        match: "subset" or "exact" argument matching.
        min_times: Matching calls needed.
        succeeded: Count only calls that returned a normal output (an errored call did nothing).
    """
    pattern = CallPattern(name=name, arguments=arguments, match=match)
    return float(_count(episode, pattern, succeeded) >= min_times)


def tool_not_called(
    task: Task, episode: Episode, env: Any = None, *, name: str, arguments: Arguments = None, match: MatchMode = "subset"
) -> float:
    """1.0 when no call to ``name`` with matching arguments was even attempted.

    Args:
        name: Tool name.
        arguments: Argument matcher; None means any call to the tool counts.
        match: "subset" or "exact" argument matching.
    """
    return float(_count(episode, CallPattern(name=name, arguments=arguments, match=match), succeeded=False) == 0)


def forbidden_actions(task: Task, episode: Episode, env: Any = None, *, actions: list[CallPattern] | None = None) -> float | None:
    """1.0 when none of the forbidden calls was attempted, else 0.0.

    Args:
        actions: Forbidden call patterns; default ``task.metadata["forbidden_actions"]``
            (a list of ``{name, arguments, match}`` mappings).

    Returns:
        None when neither the params nor the task name any forbidden action.
    """
    listed = actions if actions is not None else task.metadata.get("forbidden_actions")
    if not listed:
        return None
    patterns = [a if isinstance(a, CallPattern) else CallPattern.model_validate(a) for a in listed]
    return float(all(_count(episode, pattern, succeeded=False) == 0 for pattern in patterns))


def well_formed_call_rate(task: Task, episode: Episode, env: Any = None) -> float | None:
    """Share of attempted calls that could be run as written (no parse error, known tool,
    valid arguments). None when the model attempted no call."""
    attempted = attempted_calls(episode)
    if attempted == 0:
        return None
    return max(0.0, 1.0 - malformed_calls(episode) / attempted)


def efficiency_vs_gold(task: Task, episode: Episode, env: Any = None, *, cap: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0) -> float | None:
    """Gold call count over attempted calls, capped: 1.0 means no more calls than the reference.

    Args:
        cap: Upper bound, so doing it in fewer calls than gold is not rewarded beyond it.

    Returns:
        None when the task has no gold actions; 0.0 when the model made no call but gold did.
    """
    gold = len(task.gold_actions)
    if gold == 0:
        return None
    attempted = attempted_calls(episode)
    return 0.0 if attempted == 0 else min(cap, gold / attempted)


def _tolerant(arguments: dict[str, Any], tol: float) -> dict[str, Any]:
    """Gold arguments with every number turned into an ``$approx`` matcher."""
    return {
        k: {"$approx": v, "$tol": tol} if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        for k, v in arguments.items()
    }


def gold_calls_made(
    task: Task, episode: Episode, env: Any = None, *, match: MatchMode = "subset", tol: float = 1e-6, in_order: bool = False
) -> float | None:
    """Share of the gold actions matched by a successful call with the same name and arguments.

    Each call matches at most one gold action.

    Args:
        match: "subset" (the gold arguments must appear) or "exact" (and nothing else).
        tol: Absolute tolerance on numeric arguments.
        in_order: The matched calls must come in the gold order.

    Returns:
        None when the task has no gold actions.
    """
    if not task.gold_actions:
        return None
    calls = [rec.call for rec in call_records(episode) if rec.ok]
    used: set[int] = set()
    position = 0
    hits = 0
    for action in task.gold_actions:
        spec = _tolerant(action.arguments, tol)
        start = position if in_order else 0
        for i in range(start, len(calls)):
            if i not in used and calls[i].name == action.name and arguments_match(calls[i].arguments, spec, match):
                used.add(i)
                position = i + 1
                hits += 1
                break
    return hits / len(task.gold_actions)


def called_before(task: Task, episode: Episode, env: Any = None, *, name: str, others: list[str] | None = None) -> float | None:
    """1.0 when no call to ``others`` came before the first successful call to ``name``.

    For rules such as "verify identity before anything else".

    Args:
        name: The tool that must succeed first (for example "authenticate_user").
        others: Tools that must wait for it (default: every other tool).

    Returns:
        None when no guarded call was attempted (nothing to order).
    """
    guarded = [i for i, rec in enumerate(call_records(episode)) if rec.call.name != name and (others is None or rec.call.name in others)]
    if not guarded:
        return None
    first_ok = next((i for i, rec in enumerate(call_records(episode)) if rec.call.name == name and rec.ok), None)
    return float(first_ok is not None and first_ok < guarded[0])
