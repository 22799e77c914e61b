"""SFT loop: it learns, it trains only on masked tokens, bad steps are skipped, bad settings refused."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from toolgym.errors import ConfigError
from toolgym.policies.models.gold_episodes import replay_gold
from toolgym.policies.models.tokenizer import train_compact_tokenizer
from toolgym.trainers.demo_tasks import demo_env, demo_split
from toolgym.trainers.pretrain import build_base_model
from toolgym.trainers.sft import SFTConfig, SFTRow, conversation_row, train_rows

SMALL = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2}


@functools.lru_cache(maxsize=1)
def rows_and_tokenizer():
    from toolgym.envs.formats import get_format

    tok = train_compact_tokenizer(vocab_size=512, n_per_domain=10)
    env = demo_env()()
    convs = [replay_gold(env, t, get_format("kimi_k2")) for t in demo_split("train", 8)]
    return [conversation_row(tok, c.messages, c.tools) for c in convs], tok


def test_sft_lowers_the_assistant_loss_and_changes_only_trained_weights():
    torch.set_num_threads(2)
    rows, tok = rows_and_tokenizer()
    model = build_base_model(tok, SMALL, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train_rows(model, rows, SFTConfig(lr=5e-3, batch_size=4, epochs=8, warmup_steps=2, log_every=4), pad_id=tok.pad_token_id)
    assert result.steps == 16 and result.trained_tokens == 8 * sum(sum(r.mask) for r in rows)
    assert result.losses[-1] < 0.7 * result.losses[0], result.losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("mlp.gate" in n for n in changed)  # the router learns too
    assert not model.training


def test_rows_without_trained_tokens_skip_their_step():
    rows, tok = rows_and_tokenizer()
    model = build_base_model(tok, SMALL, seed=0)
    empty = [SFTRow(r.ids, [0] * len(r.ids)) for r in rows]
    before = [p.detach().clone() for p in model.parameters()]
    result = train_rows(model, empty, SFTConfig(batch_size=4, epochs=1, log_every=1), pad_id=tok.pad_token_id)
    assert result.steps == 0 and all(math.isnan(x) for x in result.losses)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_settings_are_refused_before_work():
    rows, tok = rows_and_tokenizer()
    model = build_base_model(tok, SMALL, seed=0)
    with pytest.raises(ConfigError, match="no rows"):
        train_rows(model, [], SFTConfig(), pad_id=0)
    with pytest.raises(ConfigError, match="batch_size"):
        train_rows(model, rows, SFTConfig(batch_size=0), pad_id=0)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        train_rows(model, rows, SFTConfig(schedule="linear"), pad_id=0)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_schedules(schedule):
    from toolgym.trainers.schedule import lr_factor as _lr_factor

    warm = [_lr_factor(step, 4, step / 100, schedule) for step in range(4)]
    assert warm == [0.25, 0.5, 0.75, 1.0]
    after = [_lr_factor(step, 4, step / 100, schedule) for step in range(4, 101)]
    if schedule == "constant":
        assert after == [1.0] * len(after)
    else:
        assert all(a >= b for a, b in zip(after, after[1:], strict=False)) and after[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differ in length"):
        SFTRow([1, 2], [1])


def test_sft_steps_through_the_shared_optimizer_step_and_counts_skips():
    rows, tok = rows_and_tokenizer()
    model = build_base_model(tok, SMALL, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_rows(model, rows, SFTConfig(batch_size=4, epochs=1, skip_grad_norm=1e-9, log_every=1), pad_id=tok.pad_token_id)
    assert result.steps == 0 and result.skipped == {"exploding_grad": 2}
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)  # measured, only the step skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    empty = [SFTRow(r.ids, [0] * len(r.ids)) for r in rows]
    assert train_rows(model, empty, SFTConfig(batch_size=4, epochs=1), pad_id=tok.pad_token_id).skipped == {"nonfinite_loss": 2}
