"""The label verdict: always a verdict, a probability, and exactly chance for a critic that names a position."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.rubrics import rubric_from_dict
from toolgym.rubrics.critics.label import (
    VERDICT_PREFIX,
    LabelVerdict,
    label_agreement,
    label_prompt,
    label_tokens,
    swapped,
)

logps = st.floats(min_value=-1e4, max_value=0.0, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(a=logps, b=logps)
def test_every_pair_of_logprobs_is_a_verdict(a, b):
    v = LabelVerdict(logp_a=a, logp_b=b)
    assert 0.0 <= v.p_a <= 1.0 and v.p("A") + v.p("B") == pytest.approx(1.0)
    if abs(a - b) > 1e-12:  # a difference a float probability can show decides the winner
        assert v.winner == ("A" if a > b else "B")
    elif a == b:
        assert v.winner == "tie"
    if abs(a - b) < 30:  # where floats can still tell: p(A) is the two-label softmax
        assert v.p_a == pytest.approx(math.exp(a) / (math.exp(a) + math.exp(b)) if max(a, b) > -700 else 1 / (1 + math.exp(b - a)))
    assert (v.p_a > 0.5) == (v.winner == "A") and (v.p_a == 0.5) == (v.winner == "tie")


@settings(max_examples=50, deadline=None)
@given(winners=st.lists(st.sampled_from(["A", "B"]), min_size=1, max_size=20), a=logps, b=logps)
def test_a_critic_that_names_a_position_is_exactly_at_chance_over_both_orders(winners, a, b):
    # The same verdict whatever the content: asked in both orders, it agrees with half of the pairs.
    both = [*winners, *(swapped(w) for w in winners)]
    verdicts = [LabelVerdict(logp_a=a, logp_b=b)] * len(both)
    assert label_agreement(verdicts, both) == 0.5


@settings(max_examples=50, deadline=None)
@given(winners=st.lists(st.sampled_from(["A", "B"]), min_size=1, max_size=20), margin=st.floats(0.01, 50.0))
def test_agreement_counts_the_verdicts_naming_the_winner(winners, margin):
    right = [LabelVerdict(logp_a=0.0, logp_b=-margin) if w == "A" else LabelVerdict(logp_a=-margin, logp_b=0.0) for w in winners]
    wrong = [LabelVerdict(logp_a=v.logp_b, logp_b=v.logp_a) for v in right]
    assert label_agreement(right, winners) == 1.0 and label_agreement(wrong, winners) == 0.0
    assert label_agreement([], []) is None
    with pytest.raises(ValueError, match="one winner per verdict"):
        label_agreement(right, [*winners, "A"])


class Tokenizer:
    """Encodes each character as one id, except the strings in ``split``, which take two."""

    def __init__(self, split: tuple[str, ...] = ()):
        self.split = split

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text in self.split:
            return [1, 2]
        return [ord(ch) for ch in text]


def test_label_tokens_and_a_tokenizer_that_splits_a_label():
    tokens = label_tokens(Tokenizer())
    assert (tokens.a, tokens.b) == (ord("A"), ord("B")) and tokens.prefix == tuple(ord(ch) for ch in VERDICT_PREFIX)
    with pytest.raises(ValueError, match="'B' encodes as \\[1, 2\\].*use critic.verdict 'json'"):
        label_tokens(Tokenizer(split=("B",)))


def test_the_compact_label_prompt_is_one_message_with_the_criterion_and_both_responses():
    rubric = rubric_from_dict({"name": "r", "criteria": [
        {"id": "ok", "description": "the answer is right", "source": {"type": "check", "check": "final_state_matches_gold"}}]})
    (user,) = label_prompt(rubric, rubric.criteria[0], "convert 3 km", "first answer", "second answer", compact=True)
    text = user.content
    assert user.role == "user" and "the answer is right" in text and "convert 3 km" not in text
    assert text.index("A: first answer") < text.index("B: second answer") and text.endswith("A or B?")


def test_label_prompt_shows_both_responses_and_asks_for_a_letter():
    rubric = rubric_from_dict({"name": "r", "criteria": [
        {"id": "ok", "description": "the answer is right", "source": {"type": "check", "check": "final_state_matches_gold"}}]})
    system, user = label_prompt(rubric, rubric.criteria[0], "convert 3 km", "first answer", "second answer")
    assert "one letter: A or B" in system.content
    text = user.content
    assert text.index("first answer") < text.index("second answer") and "the answer is right" in text and "JSON" not in text
