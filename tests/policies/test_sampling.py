"""The pure sampling step of HFPolicy: inverse-CDF draws, temperature, nucleus cut."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.policies.generation import router_logits_off, sample_tokens

PROBS = torch.tensor([[0.2, 0.5, 0.3]])
LOGITS = PROBS.log()


def _pick(u: float, temperature: float = 1.0, top_p: float = 1.0, logits=LOGITS) -> int:
    return int(sample_tokens(logits, torch.tensor([temperature]), torch.tensor([top_p]), torch.tensor([u]))[0])


def test_draws_walk_the_cdf_in_vocabulary_order():
    assert [_pick(u) for u in (0.0, 0.19, 0.21, 0.69, 0.71, 0.999999)] == [0, 0, 1, 1, 2, 2]


def test_top_p_keeps_the_smallest_nucleus():
    # top_p=0.6: tokens 1 (0.5) and 2 (0.3) are kept, token 0 (0.2) is cut.
    assert {_pick(u, top_p=0.6) for u in torch.linspace(0, 0.999, 200).tolist()} == {1, 2}
    assert {_pick(u, top_p=0.01) for u in (0.0, 0.5, 0.99)} == {1}  # the most likely token always stays


def test_zero_temperature_is_argmax_and_ignores_the_draw():
    assert {_pick(u, temperature=0.0) for u in (0.0, 0.5, 0.99)} == {1}


def test_low_temperature_sharpens():
    counts = [_pick(u, temperature=0.25) for u in torch.linspace(0, 0.999, 1000).tolist()]
    assert counts.count(1) / len(counts) > 0.8


def test_evenly_spread_draws_reproduce_the_distribution():
    n = 2000
    picks = [_pick((i + 0.5) / n) for i in range(n)]
    for token, p in enumerate(PROBS[0].tolist()):
        assert abs(picks.count(token) / n - p) <= 1 / n


def test_rows_are_independent():
    logits = torch.stack([LOGITS[0], LOGITS[0].flip(0)])
    out = sample_tokens(logits, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.1, 0.9]))
    assert out.tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-20, 20), min_size=2, max_size=40),
    temperature=st.floats(0.05, 3.0),
    top_p=st.floats(0.01, 1.0),
    u=st.floats(0.0, 1.0, exclude_max=True),
)
def test_the_sampled_token_is_inside_the_nucleus(logits, temperature, top_p, u):
    row = torch.tensor([logits])
    token = _pick(u, temperature, top_p, row)
    probs = torch.softmax(row[0] / temperature, -1).tolist()
    more_likely = sum(p for p in probs if p > probs[token])
    assert probs[token] > 0 and not math.isnan(probs[token])
    assert more_likely < top_p + 1e-6


class _Config:
    output_router_logits = True


class _Model:
    config = _Config()


def test_router_logits_are_off_while_sampling_and_restored_after():
    model = _Model()
    with router_logits_off(model):
        assert model.config.output_router_logits is False
    assert model.config.output_router_logits is True


@settings(max_examples=50, deadline=None)
@given(
    temperature=st.sampled_from([0.0, 1e-45, 1e-38, 1e-20, 1e-6, 0.5, 1.0]),
    top_p=st.sampled_from([1e-50, 1e-45, 1e-8, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_extreme_temperature_and_top_p_give_valid_tokens(temperature, top_p, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 17, generator=gen) * 30
    ids = sample_tokens(logits, torch.full((3,), temperature), torch.full((3,), top_p), torch.rand(3, generator=gen))
    assert bool(((ids >= 0) & (ids < 17)).all())
    if temperature < 1e-5 or top_p < 1e-7:
        assert ids.tolist() == logits.argmax(dim=-1).tolist()
