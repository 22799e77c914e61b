"""Importance corrections (``rl.importance``): weights, what they change, and the gap metrics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from toolgym.trainers import rl

logps = st.lists(st.floats(min_value=-12.0, max_value=0.0), min_size=1, max_size=12)


def _pair(a: list[float], b: list[float], bits: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = min(len(a), len(b), len(bits))
    return torch.tensor([a[:n]]), torch.tensor([b[:n]]), torch.tensor([[float(x) for x in bits[:n]]])


@settings(max_examples=60, deadline=None)
@given(logps, logps, st.lists(st.booleans(), min_size=1, max_size=12), st.floats(min_value=1.01, max_value=10.0))
def test_weights_follow_their_definitions(a, b, bits, cap):
    prox, behaviour, mask = _pair(a, b, bits)
    ratio = torch.exp(prox - behaviour)
    truncated = rl.importance_weights(prox, behaviour, mask, kind="truncated", cap=cap)
    masked = rl.importance_weights(prox, behaviour, mask, kind="masked", cap=cap)
    none = rl.importance_weights(prox, behaviour, mask, kind="none", cap=cap)
    assert torch.allclose(truncated, torch.minimum(ratio, torch.tensor(cap)) * mask, rtol=1e-5)
    assert torch.equal(none, mask)
    assert bool(((truncated >= 0) & (truncated <= cap + 1e-5)).all())
    assert set(masked.unique().tolist()) <= {0.0, 1.0}
    # A token is masked exactly when it is outside [1/C, C]; off the mask every weight is 0.
    outside = (ratio.log().abs() > math.log(cap)).float() * mask
    assert torch.equal(rl.corrected_tokens(prox, behaviour, mask, kind="masked", cap=cap), outside)
    assert torch.equal(masked, mask - outside)
    for w in (truncated, masked):
        assert float(w[mask == 0].abs().sum()) == 0.0


@settings(max_examples=40, deadline=None)
@given(logps, st.lists(st.booleans(), min_size=1, max_size=12))
def test_identical_policies_need_no_correction(a, bits):
    prox, _, mask = _pair(a, a, bits)
    for kind in ("truncated", "masked"):
        assert torch.equal(rl.importance_weights(prox, prox.clone(), mask, kind=kind, cap=2.0), mask)
        assert float(rl.corrected_tokens(prox, prox.clone(), mask, kind=kind, cap=2.0).sum()) == 0.0
    assert float(rl.logprob_gap(prox, prox.clone(), mask).sum()) == 0.0
    assert float(rl.behaviour_kl(prox, prox.clone(), mask).sum()) == 0.0


@settings(max_examples=40, deadline=None)
@given(logps, logps, st.lists(st.booleans(), min_size=1, max_size=12))
def test_kl_estimate_is_never_negative_and_padding_never_nan(a, b, bits):
    prox, behaviour, mask = _pair(a, b, bits)
    behaviour = torch.where(mask.bool(), behaviour, torch.full_like(behaviour, -math.inf))  # padding may hold -inf
    kl = rl.behaviour_kl(prox, behaviour, mask)
    assert bool(torch.isfinite(kl).all()) and bool((kl >= -1e-6).all())
    assert bool(torch.isfinite(rl.importance_weights(prox, behaviour, mask, kind="truncated", cap=2.0)).all())


def test_bad_cap_and_kind_are_refused():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="cap must be > 1"):
        rl.importance_weights(x, x, torch.ones(1, 2), kind="truncated", cap=1.0)
    with pytest.raises(ValueError, match="kind must be"):
        rl.importance_weights(x, x, torch.ones(1, 2), kind="clipped", cap=2.0)  # type: ignore[arg-type]
