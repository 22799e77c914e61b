"""HFPolicy on tiny MoE models: seeds, batch invariance, log-probs, stops, limits, failures."""

from __future__ import annotations

import asyncio
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import toolgym
from toolgym.envs.types import UserMessage
from toolgym.policies.hf_model import ModelDirError
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policy import PolicyRequest, SamplingParams

LOGPROB_TOL = 1e-4
"""Reported log-probs against a fresh unpadded forward pass, float32 on CPU."""


@pytest.fixture(scope="module", params=["kimi", "qwen3"])
def policy(request):
    return HFPolicy.from_pretrained(cached_tiny_model(request.param), max_batch_size=4)


@pytest.fixture(scope="module")
def kimi():
    return HFPolicy.from_pretrained(cached_tiny_model("kimi"))


def make_requests(n: int, max_new_tokens: int = 12, **sampling) -> list[PolicyRequest]:
    env = toolgym.make("toolgym/unitconv-v0")
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=i)
        params = SamplingParams(max_new_tokens=max_new_tokens, **sampling)
        out.append(PolicyRequest(episode_id=f"e{i}", messages=list(env.messages), tools=obs.tools, seed=1000 + i, sampling=params))
    return out


def generate(policy, requests):
    return asyncio.run(policy.generate(requests))


def test_same_seed_same_turn_other_seed_other_turn(kimi):
    request = make_requests(1, max_new_tokens=16)[0]
    a, b = generate(kimi, [request]), generate(kimi, [request])
    assert a == b
    other = generate(kimi, [request.model_copy(update={"seed": 7})])
    assert other[0].token_ids != a[0].token_ids


def test_batched_equals_one_by_one(policy):
    # Mixed lengths (left padding), temperatures, nucleus sizes and budgets; max_batch_size=4 also splits the list.
    settings = [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9}, {"temperature": 0.0}, {"temperature": 1.3, "top_p": 0.5}]
    requests = make_requests(6, max_new_tokens=10)
    for i, r in enumerate(requests):
        r.sampling = SamplingParams(max_new_tokens=6 + 2 * i, **settings[i % 4])
        if i % 2:  # a longer conversation, so prompts differ in length
            r.messages.append(UserMessage(content="and please be quick " * i))
    batched = generate(policy, requests)
    alone = [generate(policy, [r])[0] for r in requests]
    assert len({len(t.prompt_token_ids) for t in batched}) > 1
    for b, a in zip(batched, alone, strict=True):
        assert b.error is None and b.token_ids == a.token_ids and b.text == a.text
        assert max(abs(x - y) for x, y in zip(b.logprobs, a.logprobs, strict=True)) < LOGPROB_TOL


def test_logprobs_are_raw_model_logprobs_at_temperature_one(policy):
    turns = generate(policy, make_requests(3, max_new_tokens=12, temperature=0.6, top_p=0.8))
    for turn in turns:
        ids = torch.tensor([turn.prompt_token_ids + turn.token_ids])
        with torch.no_grad():
            logits = policy.model(ids).logits[0].float()  # (T, V)
        start = len(turn.prompt_token_ids)
        expected = torch.log_softmax(logits[start - 1 : -1], dim=-1).gather(1, torch.tensor(turn.token_ids)[:, None])
        assert len(turn.logprobs) == len(turn.token_ids) == 12
        assert torch.allclose(torch.tensor(turn.logprobs), expected.squeeze(1), atol=LOGPROB_TOL, rtol=0)


def test_greedy_picks_the_argmax_whatever_the_seed(kimi):
    request = make_requests(1, max_new_tokens=8, temperature=0.0)[0]
    a = generate(kimi, [request])[0]
    b = generate(kimi, [request.model_copy(update={"seed": 99})])[0]
    assert a.token_ids == b.token_ids
    ids = torch.tensor([a.prompt_token_ids + a.token_ids])
    with torch.no_grad():
        logits = kimi.model(ids).logits[0, len(a.prompt_token_ids) - 1 : -1]
    assert logits.argmax(-1).tolist() == a.token_ids


def test_text_is_the_decoded_tokens_and_budget_gives_length(kimi):
    turn = generate(kimi, make_requests(1, max_new_tokens=9))[0]
    assert turn.finish_reason == "length" and len(turn.token_ids) == 9
    assert turn.text == kimi.tokenizer.decode(turn.token_ids, skip_special_tokens=False)


def test_stop_string_ends_the_turn_and_stays_in_the_text(kimi):
    request = make_requests(1, max_new_tokens=24, temperature=0.0)[0]
    full = generate(kimi, [request])[0]
    pieces = [kimi.tokenizer.decode(full.token_ids[: k + 1]) for k in range(len(full.token_ids))]
    k = next(k for k in range(4, len(pieces)) if len(pieces[k]) >= 3 and pieces[k][-3:] not in pieces[k - 1])
    stop = pieces[k][-3:]  # first appears when token k is sampled
    request.sampling.stop = [stop]
    cut = generate(kimi, [request])[0]
    assert cut.finish_reason == "stop" and cut.token_ids == full.token_ids[: k + 1]
    assert cut.text.endswith(stop)


def test_end_of_turn_token_is_kept_in_ids_and_dropped_from_text(kimi):
    request = make_requests(1, max_new_tokens=12, temperature=0.0)[0]
    full = generate(kimi, [request])[0]
    end = full.token_ids[5]
    saved = kimi.end_ids
    kimi.end_ids = {end}  # pretend that token ends a turn
    try:
        turn = generate(kimi, [request])[0]
    finally:
        kimi.end_ids = saved
    first = full.token_ids.index(end)
    assert turn.finish_reason == "stop" and turn.token_ids == full.token_ids[: first + 1]
    assert turn.text == kimi.tokenizer.decode(full.token_ids[:first], skip_special_tokens=False)


def test_router_logits_setting_is_forced_off_during_generation(policy):
    policy.model.config.output_router_logits = True
    try:
        turns = generate(policy, make_requests(2, max_new_tokens=4))
        assert all(t.error is None for t in turns)
        assert policy.model.config.output_router_logits is True
    finally:
        policy.model.config.output_router_logits = False


def test_prompt_longer_than_context_is_a_context_overflow_turn(kimi):
    short, long = make_requests(2, max_new_tokens=4)
    long.messages.append(UserMessage(content="very long " * 2000))
    small = HFPolicy(kimi.model, kimi.tokenizer, max_context=len(kimi.render(short)) + 2)
    overflow, ok = generate(small, [long, short])
    assert overflow.error is not None and overflow.error.kind == "context_overflow"
    assert "context holds" in overflow.error.message and overflow.finish_reason == "error"
    assert overflow.prompt_token_ids  # the prompt that did not fit is still reported
    assert ok.error is None and len(ok.token_ids) == 2 and ok.finish_reason == "length"  # budget cut to the context


def test_a_failing_model_gives_model_error_turns_not_exceptions(kimi):
    class Broken:
        config = kimi.model.config
        generation_config = kimi.model.generation_config

        def parameters(self):
            return kimi.model.parameters()

        def __call__(self, **kwargs):
            raise RuntimeError("CUDA out of memory (simulated)")

    turns = generate(HFPolicy(Broken(), kimi.tokenizer), make_requests(3))
    assert [t.error.kind for t in turns] == ["model_error"] * 3
    assert "out of memory" in turns[0].error.message


def test_event_loop_stays_live_while_the_model_runs(kimi):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await kimi.generate(make_requests(2, max_new_tokens=16))
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 3


def test_model_dir_errors_name_the_path_and_the_missing_part(tmp_path):
    source = cached_tiny_model("kimi")
    with pytest.raises(ModelDirError, match=r"'.*nowhere' does not exist"):
        HFPolicy.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelDirError, match="has no config.json"):
        HFPolicy.from_pretrained(empty)
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(source / name, no_tokenizer / name)
    with pytest.raises(ModelDirError, match=r"no_tokenizer' has no tokenizer \(expected one of tokenizer.json"):
        HFPolicy.from_pretrained(no_tokenizer)
    no_template = tmp_path / "no_template"
    shutil.copytree(source, no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(ModelDirError, match="has no chat template"):
        HFPolicy.from_pretrained(no_template)


def test_any_local_causal_lm_folder_works(tmp_path, kimi):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(kimi.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=0, eos_token_id=2,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    kimi.tokenizer.save_pretrained(tmp_path)
    dense = HFPolicy.from_pretrained(tmp_path)
    requests = make_requests(3, max_new_tokens=6)
    batched = generate(dense, requests)
    assert [t.token_ids for t in batched] == [generate(dense, [r])[0].token_ids for r in requests]
    dense.close()
