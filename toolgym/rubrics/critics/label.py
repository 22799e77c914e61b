"""The label verdict: a pairwise judgement read from the judge's next-token log-probabilities of "A" and "B".

``PairwiseCritic`` asks for a JSON verdict, which suits an LLM judge but fails a small model
twice: before it has learned the format nothing parses (so nothing can be rewarded or
measured), and a sampled verdict is a noisy estimate of what the model believes. The label
verdict avoids both. The critic prompt ends with a fixed verdict prefix (``Winner: ``) in the
assistant's turn, and the verdict is the model's next-token distribution over the two answer
labels:

- it always parses: every prompt that fits the context gives a verdict, by construction;
- it is a probability, ``p(A) = exp(lp_A) / (exp(lp_A) + exp(lp_B))``, usable as a soft score
  and for AUC, not only as a hard winner;
- it is cheap: one forward pass per prompt, no sampling, no decoding.

Each pair is asked in both A/B orders so that a critic that always names one position is
exactly at chance (0.5), never above it. Everything here is pure (no model, no torch); the
forward that reads the log-probabilities lives with the trainer
(``toolgym.trainers.critic_loop.label_logprobs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolgym.envs.types import Message, SystemMessage, UserMessage
from toolgym.rubrics.critics.pairwise import pairwise_sections
from toolgym.rubrics.rubric import Criterion, Rubric

Label = Literal["A", "B"]
LABELS: tuple[Label, Label] = ("A", "B")
VERDICT_PREFIX = "Winner: "
"""Text the verdict's assistant turn starts with; the next token is the label."""
LABEL_SYSTEM = (
    "You compare two responses of an AI assistant working with tools on the same task. Decide which "
    "response better meets the criterion. Judge only what the transcripts show. Answer with one letter: A or B."
)


def label_prompt(rubric: Rubric, criterion: Criterion, task: str, a: str, b: str, *, compact: bool = False) -> list[Message]:
    """Messages asking which of two transcripts better meets ``criterion`` (answered by one label token).

    ``compact``: one user message with the criterion and the two responses, no system prompt, rubric
    or task: about a third of the full prompt's tokens for two short responses (~100 against ~335
    with the tiny model's template), so a third of the cost per verdict. On the tiny MoE it is also
    what let the judgement carry over to unseen pairs: trained on the same fixed pairs to the same
    fit, the compact prompt's held-out agreement rose (0.51 -> 0.67 over 3 seeds) and the full
    prompt's did not (0.54 -> 0.54; ``benchmarks/critic_objective.py``). Only for criteria that
    can be judged from the responses alone.
    """
    if compact:
        return [UserMessage(content=f"Criterion: {criterion.description}\n\nA: {a}\n\nB: {b}\n\nA or B?")]
    body = "\n\n".join([*pairwise_sections(rubric, [criterion], task, a, b), "Which response is better? Answer A or B."])
    return [SystemMessage(content=LABEL_SYSTEM), UserMessage(content=body)]


@dataclass(frozen=True)
class LabelTokens:
    """Token ids of the verdict prefix and of the two labels, for one tokenizer."""

    prefix: tuple[int, ...]
    a: int
    b: int


def label_tokens(tokenizer: Any) -> LabelTokens:
    """The prefix and label ids of ``tokenizer`` (a Hugging Face tokenizer).

    Raises:
        ValueError: A label is not exactly one token, or both labels are the same token (the
            verdict would be unreadable); the message names the label and its tokens.
    """
    ids = []
    for label in LABELS:
        got = tokenizer.encode(label, add_special_tokens=False)
        if len(got) != 1:
            raise ValueError(f"critic.verdict 'label' needs each answer label to be one token; {label!r} encodes as "
                             f"{got} with this tokenizer: use critic.verdict 'json' for it")
        ids.append(int(got[0]))
    if ids[0] == ids[1]:
        raise ValueError(f"critic.verdict 'label': labels 'A' and 'B' are the same token {ids[0]}: use critic.verdict 'json'")
    prefix = tuple(int(i) for i in tokenizer.encode(VERDICT_PREFIX, add_special_tokens=False))
    return LabelTokens(prefix=prefix, a=ids[0], b=ids[1])


@dataclass(frozen=True)
class LabelVerdict:
    """One pairwise verdict: the judge's log-probabilities of "A" and "B" after the verdict prefix."""

    logp_a: float
    logp_b: float

    @property
    def log_odds(self) -> float:
        """log p(A) - log p(B): the verdict's log-odds for "A" (exact, however sure the verdict is)."""
        return self.logp_a - self.logp_b

    @property
    def p_a(self) -> float:
        """Probability of "A" among the two labels (the other tokens of the vocabulary renormalised away)."""
        return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, self.logp_b - self.logp_a))))

    @property
    def winner(self) -> Label | Literal["tie"]:
        """The more probable label, or "tie" when both are equally probable (read from ``p_a``, so that a
        log-prob difference too small to change a float probability is a tie, never a win at p = 0.5)."""
        p = self.p_a
        return "A" if p > 0.5 else "B" if p < 0.5 else "tie"

    def p(self, label: Label) -> float:
        """Probability of ``label`` among the two labels."""
        return self.p_a if label == "A" else 1.0 - self.p_a


def swapped(label: Label) -> Label:
    """The other label: the verified winner of a pair asked in the opposite order."""
    return "B" if label == "A" else "A"


def label_agreement(verdicts: Sequence[LabelVerdict], winners: Sequence[Label]) -> float | None:
    """Share of verdicts naming the verified winner (a tie counts half, as in ``online.check_criterion``);
    None without verdicts."""
    if len(verdicts) != len(winners):
        raise ValueError(f"label_agreement needs one winner per verdict, got {len(verdicts)} verdicts and {len(winners)} winners")
    if not verdicts:
        return None
    hits = sum(1.0 if v.winner == w else 0.5 if v.winner == "tie" else 0.0 for v, w in zip(verdicts, winners, strict=True))
    return hits / len(verdicts)
