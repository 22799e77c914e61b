"""Checks on the final answer: required outputs, and a match against the reference answer."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Literal

from toolgym.envs.types import AssistantMessage, Task
from toolgym.rollouts.episode import Episode

# A number not glued to a word or another number: "total_5" holds none, "12.5 km" holds 12.5.
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalize(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed, outer punctuation and quotes removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .,;:!?\"'`")


def numbers_in(text: str) -> list[float]:
    """The numbers written in ``text``, in order (thousands separators allowed)."""
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def answer_text(episode: Episode, include_reasoning: bool = False) -> str:
    """What an answer check reads: the final answer, which never holds reasoning.

    With ``include_reasoning`` the reasoning of the answering turn (``AssistantMessage.reasoning``)
    comes first, for rubrics that mean to judge it; by default checks see only the answer.
    """
    if not include_reasoning:
        return episode.final_answer
    last = next((m for m in reversed(episode.messages) if isinstance(m, AssistantMessage) and not m.tool_calls), None)
    reasoning = last.reasoning if last is not None else None
    return f"{reasoning}\n\n{episode.final_answer}" if reasoning else episode.final_answer


def required_outputs_present(
    task: Task, episode: Episode, env: Any = None, *, outputs: list[str] | None = None, normalized: bool = True,
    include_reasoning: bool = False,
) -> float | None:
    """Share of the required outputs that appear in the final answer.

    Args:
        outputs: Required strings; default ``task.expected.outputs``.
        normalized: Compare after ``normalize`` (case, spacing) instead of verbatim.
        include_reasoning: Also search the answering turn's reasoning (off: the answer only).

    Returns:
        None when nothing is required.
    """
    required = outputs if outputs is not None else task.expected.outputs
    if not required:
        return None
    text = answer_text(episode, include_reasoning)
    answer = normalize(text) if normalized else text
    found = sum((normalize(out) if normalized else out) in answer for out in required)
    return found / len(required)


def answer_matches(
    task: Task,
    episode: Episode,
    env: Any = None,
    *,
    mode: Literal["exact", "normalized", "numeric"] = "normalized",
    reference: str | None = None,
    tol: float = 1e-6,
    rel_tol: float = 0.0,
    pick: Literal["first", "last", "any", "only"] = "first",
    include_reasoning: bool = False,
) -> float | None:
    """1.0 when the final answer matches the reference answer.

    Args:
        mode: "exact" (after stripping), "normalized" (see ``normalize``) or "numeric".
        reference: Default ``task.expected.answer``, else ``task.gold_answer``.
        tol: Absolute tolerance of "numeric".
        rel_tol: Relative tolerance of "numeric".
        pick: Which number of the answer "numeric" compares: the first, the last, any of them
            (easy to game by listing many), or the only one (0.0 if there are several).
        include_reasoning: Match against the answering turn's reasoning followed by the answer
            (off: the answer only).

    Returns:
        None when there is no reference.

    Raises:
        ValueError: "numeric" with a reference that holds no number (a rubric error).
    """
    ref = reference if reference is not None else (task.expected.answer or task.gold_answer)
    if ref is None:
        return None
    answer = answer_text(episode, include_reasoning)
    if mode == "exact":
        return float(answer.strip() == ref.strip())
    if mode == "normalized":
        return float(normalize(answer) == normalize(ref))
    targets = numbers_in(ref)
    if not targets:
        raise ValueError(f"answer_matches(mode='numeric'): the reference {ref!r} holds no number; use mode='normalized'")
    found = numbers_in(answer)
    candidates = {"first": found[:1], "last": found[-1:], "any": found, "only": found if len(found) == 1 else []}[pick]
    return float(any(math.isclose(x, targets[0], abs_tol=tol, rel_tol=rel_tol) for x in candidates))
