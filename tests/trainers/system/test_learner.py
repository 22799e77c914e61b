"""Data-parallel learners: the ranks' gradient shares sum to the one-learner gradient of the same minibatch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from toolgym.trainers.batch import Batch
from toolgym.trainers.grpo import LossSettings, accumulate


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models import cached_tiny_model

    return AutoModelForCausalLM.from_pretrained(cached_tiny_model("kimi"))


def random_batch(rows: int, width: int, seed: int, vocab: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(width // 2, width + 1, (rows,), generator=g)
    attention = (torch.arange(width)[None] < lengths[:, None]).long()  # (B, T) right padding
    loss_mask = ((torch.rand(rows, width, generator=g) < 0.6) & attention.bool()).float()
    loss_mask[:, 0] = 0
    return Batch(
        input_ids=torch.randint(0, vocab, (rows, width), generator=g) * attention, attention_mask=attention,
        loss_mask=loss_mask, old_logp=-torch.rand(rows, width, generator=g) * 3 * loss_mask,
        advantages=torch.randn(rows, generator=g), rewards=torch.rand(rows, generator=g), baselines=torch.zeros(rows),
    )


def grads_of(model, batch: Batch, s: LossSettings, micro: int, shard: tuple[int, int]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    accumulate(model, batch, s, micro, shard=shard)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([2, 4]), st.integers(0, 10_000), st.sampled_from(["grpo", "dapo", "dr_grpo", "k2"]))
def test_rank_gradients_sum_to_the_one_learner_gradient(model, world, seed, loss):
    micro = 1
    batch = random_batch(rows=world * 2 * micro, width=12, seed=seed, vocab=model.config.vocab_size)
    s = LossSettings(loss=loss, aux_weight=0.001, constant=16.0)
    whole = grads_of(model, batch, s, micro, (0, 1))
    shares = [grads_of(model, batch, s, micro, (rank, world)) for rank in range(world)]
    summed: dict[str, torch.Tensor] = {}
    for share in shares:
        for name, g in share.items():
            summed[name] = summed.get(name, torch.zeros_like(g)) + g
    assert summed.keys() == whole.keys()  # a parameter no rank touched keeps no gradient, as with one learner
    for name, g in whole.items():
        assert torch.allclose(summed[name], g, atol=1e-6, rtol=1e-4), name
