"""Reasoning blocks: the part of an assistant turn that is thinking, not answer.

Qwen3, DeepSeek-R1/V3.1, GLM-4.5 and Kimi-K2-Thinking write ``<think>…</think>``; Magistral
``[THINK]…[/THINK]``; Kimi's older thinking models ``◁think▷…◁/think▷``. The text inside goes to ``ParsedTurn.reasoning`` and never into
``content`` (so never into ``final_answer`` or an answer check).

Stated handling of the odd cases:

- ``…</think>`` with no opening tag: the generation prompt opened the block (DeepSeek-R1,
  V3.1 thinking, Qwen3 thinking-2507 templates end with ``<think>``), so everything before
  the first closing tag is reasoning.
- ``<think>…`` never closed (the turn ran out of tokens mid-thought): the rest is
  reasoning, and the turn gets a parse error (so it is not taken as an answer).
- a closing tag with no block open after the answer began: a parse error, the tag dropped.
- several blocks: all are reasoning, joined by a blank line.

A generation prompt that opens a block the model never closes leaves no marker in the
generated text; callers in that position pass ``open_tag + text``.
"""

from __future__ import annotations

from toolgym.envs.formats.base import ParseError, snippet

THINK = ("<think>", "</think>")
"""Qwen3, DeepSeek, GLM, Kimi-K2-Thinking."""
MISTRAL_THINK = ("[THINK]", "[/THINK]")
"""Magistral."""
KIMI_VL_THINK = ("◁think▷", "◁/think▷")
"""Kimi-VL-Thinking and older Kimi reasoning models."""


def split_reasoning(text: str, tags: tuple[str, str]) -> tuple[list[str], str, list[ParseError]]:
    """(reasoning pieces, the text outside them, errors) for one pair of tags.

    >>> split_reasoning("<think>hm</think>42", THINK)
    (['hm'], '42', [])
    >>> split_reasoning("hm</think>42", THINK)[:2]
    (['hm'], '42')
    """
    open_tag, close_tag = tags
    if open_tag not in text and close_tag not in text:
        return [], text, []
    pieces: list[str] = []
    outside: list[str] = []
    errors: list[ParseError] = []
    pos = 0
    first_close, first_open = text.find(close_tag), text.find(open_tag)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        pieces.append(text[:first_close])  # the prompt opened this block
        pos = first_close + len(close_tag)
    while (start := text.find(open_tag, pos)) >= 0:
        outside.append(text[pos:start])
        end = text.find(close_tag, start + len(open_tag))
        if end < 0:
            pieces.append(text[start + len(open_tag) :])
            errors.append(
                ParseError(
                    message=f"the reasoning block opened with {open_tag} is never closed: end it with {close_tag}, "
                    "then answer or call a tool",
                    snippet=snippet(text[start:]),
                )
            )
            pos = len(text)
            break
        pieces.append(text[start + len(open_tag) : end])
        pos = end + len(close_tag)
    outside.append(text[pos:])
    answer = "".join(outside)
    if close_tag in answer:
        errors.append(
            ParseError(message=f"{close_tag} with no open {open_tag} block before it; reasoning goes first, then the answer",
                       snippet=snippet(answer.strip()))
        )
        answer = answer.replace(close_tag, "")
    return [p.strip() for p in pieces], answer, errors


def join_reasoning(pieces: list[str]) -> str | None:
    """The reasoning field from its pieces: None when there were no blocks at all."""
    return "\n\n".join(p for p in pieces if p) if pieces else None
