"""Token-faithful multi-turn rollouts on two chat templates, locally and through ``toolgym serve``.

A random-weight tiny MoE writes garbage, which is what makes this a hard test: re-rendering
and re-tokenizing its text almost never gives back the ids it sampled. A small logit bias on
``<|im_end|>`` makes some turns end by the end-of-turn token and others by length, so both
ways of closing a turn are covered. A simulated user answers every final answer, so episodes
run to ``max_turns`` with user turns and parse-error tool turns between the model's turns.
"""

from __future__ import annotations

import copy
import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolgym
from toolgym.envs.types import AssistantMessage, ToolMessage, UserMessage
from toolgym.policies.hf_model import load_model_and_tokenizer
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model, chat_template, model_config
from toolgym.policies.models.tokenizer import train_compact_tokenizer
from toolgym.policy import SamplingParams
from toolgym.rollouts import run_episodes, sample_tasks
from toolgym.rollouts.rows import TOKEN_FORKS, TOKEN_TURNS_WITHOUT_IDS, collate, episode_to_rows, turn_continuity

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

LOGPROB_TOL = 1e-4
TEMPLATES = ["hermes", "kimi_compact"]
SAMPLING = SamplingParams(max_new_tokens=10, temperature=1.0)
END_BIAS = 3.0
"""Added to the ``<|im_end|>`` logit (in generation and in the checking forward pass alike)."""


def chatty_env():
    """UnitConv whose user always asks for more, so every episode lasts ``max_turns`` turns."""
    env = toolgym.make("toolgym/unitconv-v0")
    env.unwrapped.on_answer = lambda content: ([UserMessage(content="Please go on.")], None)
    return env


def tasks(n: int = 3, max_turns: int = 3):
    out = sample_tasks("toolgym/unitconv-v0", n, seed=0)
    return [t.model_copy(update={"limits": t.limits.model_copy(update={"max_turns": max_turns})}) for t in out]


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model("kimi")


@functools.cache
def compact_tokenizer():
    """The compact Kimi-style template's own tokenizer (atomic digits and markers), trained once."""
    return train_compact_tokenizer()


def load(model_dir, template: str):
    """A tiny random Kimi-shaped MoE and the tokenizer that ships with the template.

    Hermes: the cached tiny model. Compact Kimi: a model of the same shape built on the
    compact tokenizer (seeded weights, never saved).
    """
    if template == "hermes":
        model, tokenizer = load_model_and_tokenizer(model_dir)
        tokenizer.chat_template = chat_template(template)
        return model, tokenizer
    from transformers import AutoModelForCausalLM

    tokenizer = copy.deepcopy(compact_tokenizer())
    pad, end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = model_config("kimi", vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=[end, pad])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = [end, pad]
    return model, tokenizer


def make_policy(model_dir, template: str) -> HFPolicy:
    model, tokenizer = load(model_dir, template)
    bias = torch.zeros(model.config.vocab_size)  # (V,)
    bias[tokenizer.convert_tokens_to_ids("<|im_end|>")] = END_BIAS
    model.get_output_embeddings().register_forward_hook(lambda _m, _i, out: out + bias)
    return HFPolicy(model, tokenizer, max_batch_size=8)


@pytest.fixture(scope="module", params=TEMPLATES)
def run(request, model_dir):
    """A policy with one template and the episodes it played (3 tasks x 2 siblings, 3 turns each)."""
    policy = make_policy(model_dir, request.param)
    # Seed 13: with either template, some of these turns stop at <|im_end|> and some hit the
    # length cap (test_rows_are_the_generated_ids_turn_by_turn needs both); re-pick it if the
    # seed derivation (toolgym.envs.canonical.seed_from) ever changes.
    episodes = run_episodes(chatty_env, policy, tasks=tasks(), group_size=2, seed=13, sampling=SAMPLING)
    yield policy, episodes
    policy.close()


class Stripped:
    """Sends requests without the previous turn's ids: the server or policy re-renders in full."""

    def __init__(self, inner):
        self.inner = inner

    async def generate(self, requests):
        return await self.inner.generate([r.model_copy(update={"prefix_token_ids": None, "prefix_messages": 0}) for r in requests])


class Drifting:
    """Corrupts the carried ids of each episode's second turn (a forced drift)."""

    def __init__(self, inner):
        self.inner = inner
        self.asked: dict[str, int] = {}

    async def generate(self, requests):
        def corrupt(r):
            self.asked[r.episode_id] = self.asked.get(r.episode_id, 0) + 1
            if self.asked[r.episode_id] != 2:
                return r
            return r.model_copy(update={"prefix_token_ids": r.prefix_token_ids[:-2] + [r.prefix_token_ids[-1]]})

        return await self.inner.generate([corrupt(r) for r in requests])


pieces = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6) | st.sampled_from(["\n", "<tool_call>", "</tool_response>", "<|im_end|>", " 42", "{"])
texts = st.lists(pieces, max_size=6).map("".join)
sampled_texts = texts.filter(lambda t: "<|im_end|>" not in t)  # sampling stops at the end-of-turn token
observations = st.lists(
    st.one_of(
        st.builds(lambda c: ToolMessage(tool_call_id="c", name="f", content=c), texts),
        st.builds(lambda c: UserMessage(content=c), texts),
    ),
    min_size=1, max_size=3,
)


@pytest.mark.parametrize("template", TEMPLATES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=sampled_texts, new=observations, ended=st.booleans())
def test_extended_prompt_decodes_to_the_template_rendering(model_dir, template, raw, new, ended):
    # For any assistant text and any tool/user messages after it, the prefix ids plus the
    # observation ids decode to exactly what the template renders for the whole conversation.
    from toolgym.policies.chat import ChatRenderer

    tokenizer = _tokenizer(model_dir, template)
    renderer = ChatRenderer(tokenizer)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    opening = [UserMessage(content="Convert 3 m to ft.")]
    prefix = renderer.token_ids(opening) + tokenizer.encode(raw, add_special_tokens=False) + ([end] if ended else [])
    conversation = [*opening, AssistantMessage(content=raw, raw=raw), *new]
    ids = renderer.prompt_ids(conversation, prefix_ids=prefix, prefix_messages=2)
    assert ids[: len(prefix)] == prefix
    assert tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == renderer.text(conversation)


_TOKENIZERS: dict[tuple[str, str], object] = {}


def _tokenizer(model_dir, template):
    from transformers import AutoTokenizer

    key = (str(model_dir), template)
    if key not in _TOKENIZERS:
        if template == "hermes":
            _TOKENIZERS[key] = AutoTokenizer.from_pretrained(model_dir)
        else:
            _TOKENIZERS[key] = compact_tokenizer()
        assert _TOKENIZERS[key].chat_template == chat_template(template)
    return _TOKENIZERS[key]


def test_rows_are_the_generated_ids_turn_by_turn(run):
    _, episodes = run
    ended = set()
    for ep in episodes:
        assert len(ep.turns) == 3 and ep.metrics[TOKEN_FORKS] == 0 and ep.metrics[TOKEN_TURNS_WITHOUT_IDS] == 0
        (row,) = episode_to_rows(ep)
        assert turn_continuity(ep.turns) == ["first", "clean", "clean"]
        for (start, end), turn in zip(row.turn_spans, ep.turns, strict=True):
            assert row.input_ids[:start] == turn.prompt_token_ids  # what the policy was shown
            assert row.input_ids[start:end] == turn.token_ids  # what it sampled
            ended.add(turn.finish_reason)
        assert sum(row.loss_mask) == sum(len(t.token_ids) for t in ep.turns)
        assert [i for i, m in enumerate(row.loss_mask) if m] == [i for s, e in row.turn_spans for i in range(s, e)]
    assert ended == {"stop", "length"}  # both ways of closing a turn were exercised


def test_observation_tokens_render_the_conversation_as_the_template_does(run):
    # Text-level check of the observation suffix (new messages, the separator after <|im_end|>,
    # the next header): decoding a prompt gives the template's rendering of the conversation,
    # except for end ids the model sampled that are not the template's (they stay, as sampled).
    policy, episodes = run
    template_end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ep in episodes:
        for k, turn in enumerate(ep.turns):
            sampled_ends = {s + len(t.token_ids) - 1 for t, s in _starts(ep)[:k] if t.token_ids[-1] != template_end and t.finish_reason == "stop"}
            kept = [t for i, t in enumerate(turn.prompt_token_ids) if i not in sampled_ends]
            text = policy.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            assert text == policy.renderer.text(ep.messages[: turn.observation_start - 1], ep.tools)


def _starts(ep):
    (row,) = episode_to_rows(ep)
    return [(t, s) for t, (s, _) in zip(ep.turns, row.turn_spans, strict=True)]


def test_forward_pass_over_rows_reproduces_behaviour_logprobs(run):
    policy, episodes = run
    rows = [r for ep in episodes for r in episode_to_rows(ep)]
    batch = collate(rows, pad_id=policy.pad_id)
    with torch.inference_mode():
        logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()  # (B, T, V)
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)  # (B, T-1)
    mask = batch["loss_mask"][:, 1:].bool()
    assert mask.sum() > 50
    diff = (logprobs - batch["behaviour_logprobs"][:, 1:]).abs()[mask]
    assert diff.max().item() < LOGPROB_TOL


def test_full_rerender_would_not_be_faithful(run):
    # Why the prefix matters: re-tokenizing the model's garbage rarely gives back its ids.
    policy, episodes = run
    differs = sum(policy.renderer.token_ids(ep.messages[: t.observation_start - 1], ep.tools) != t.prompt_token_ids for ep in episodes for t in ep.turns[1:])
    assert differs > 0


def test_forced_drift_starts_a_counted_new_row(model_dir):
    policy = make_policy(model_dir, "hermes")
    episodes = run_episodes(chatty_env, Drifting(policy), tasks=tasks(2), seed=11, sampling=SAMPLING)
    for ep in episodes:
        assert turn_continuity(ep.turns) == ["first", "fork", "clean"]
        assert ep.metrics[TOKEN_FORKS] == 1
        rows = episode_to_rows(ep)
        assert [r.turn_indices for r in rows] == [[0], [1, 2]]
        assert rows[1].input_ids[: rows[1].turn_spans[0][0]] == ep.turns[1].prompt_token_ids
    policy.close()


def test_policy_without_ids_gives_no_rows_and_counts_the_turns():
    from toolgym.policies.scripted import ScriptedPolicy

    gold = sample_tasks("toolgym/unitconv-v0", 2)
    for ep in run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(gold), tasks=gold):
        assert episode_to_rows(ep) == []
        assert ep.metrics[TOKEN_TURNS_WITHOUT_IDS] == len(ep.turns) > 0


def test_openai_policy_through_serve_is_token_faithful(model_dir):
    import httpx

    from toolgym.policies.openai_policy import OpenAIPolicy
    from toolgym.policies.serve import serve_in_thread

    local = make_policy(model_dir, "hermes")
    expected = run_episodes(chatty_env, local, tasks=tasks(2), seed=5, sampling=SAMPLING)
    with serve_in_thread(local, max_batch=8) as url:
        client = OpenAIPolicy(url, max_retries=0)
        served = run_episodes(chatty_env, client, tasks=tasks(2), seed=5, sampling=SAMPLING)
        counts = httpx.get(f"{url}/health").json()["chat_prompts"]
        # A server that ignores the prefix re-renders; every turn that no longer extends is a counted fork.
        rerendered = run_episodes(chatty_env, Stripped(client), tasks=tasks(2), seed=5, sampling=SAMPLING)
    local.close()
    assert counts == {"extended": 4, "rendered": 2}  # 2 episodes x 3 turns: the first of each is rendered
    for ep, ref in zip(served, expected, strict=True):
        assert [(t.prompt_token_ids, t.token_ids) for t in ep.turns] == [(t.prompt_token_ids, t.token_ids) for t in ref.turns]
        assert [r.input_ids for r in episode_to_rows(ep)] == [r.input_ids for r in episode_to_rows(ref)]
        assert all(abs(a - b) < LOGPROB_TOL for t, u in zip(ep.turns, ref.turns, strict=True) for a, b in zip(t.logprobs, u.logprobs, strict=True))
    forks = sum(ep.metrics[TOKEN_FORKS] for ep in rerendered)
    assert forks > 0
    for ep in rerendered:
        rows = episode_to_rows(ep)
        assert len(rows) == 1 + ep.metrics[TOKEN_FORKS]
        for row in rows:
            for (start, _), index in zip(row.turn_spans, row.turn_indices, strict=True):
                assert row.input_ids[:start] == ep.turns[index].prompt_token_ids


def test_completions_api_with_a_chat_renderer_extends_the_ids_client_side(model_dir):
    from toolgym.policies.chat import ChatRenderer
    from toolgym.policies.openai_policy import OpenAIPolicy
    from toolgym.policies.serve import serve_in_thread

    local = make_policy(model_dir, "kimi_compact")
    expected = run_episodes(chatty_env, local, tasks=tasks(2), seed=9, sampling=SAMPLING)
    renderer = ChatRenderer(local.tokenizer, end_ids=local.end_ids)
    with serve_in_thread(local, max_batch=8) as url:
        client = OpenAIPolicy(url, api="completions", prompt_renderer=renderer, max_retries=0)
        served = run_episodes(chatty_env, client, tasks=tasks(2), seed=9, sampling=SAMPLING)
    local.close()
    for ep, ref in zip(served, expected, strict=True):
        assert ep.metrics[TOKEN_FORKS] == 0
        assert [r.input_ids for r in episode_to_rows(ep)] == [r.input_ids for r in episode_to_rows(ref)]


def test_serve_rejects_prefix_ids_outside_the_vocabulary(model_dir):
    import httpx

    from toolgym.policies.serve import serve_in_thread

    policy = make_policy(model_dir, "hermes")
    with serve_in_thread(policy) as url:
        body = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}],
                "prompt_prefix_token_ids": [1, 10**9], "prompt_prefix_messages": 2, "max_tokens": 2}
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    policy.close()
    assert answer.status_code == 400 and "prompt_prefix_token_ids" in answer.json()["error"]["message"]


def test_requests_in_one_batch_stay_faithful(model_dir):
    # The same episodes one request per generate call give the same rows as batched ones.
    policy = make_policy(model_dir, "kimi_compact")
    batched = run_episodes(chatty_env, policy, tasks=tasks(2), seed=3, sampling=SAMPLING)
    single = run_episodes(chatty_env, policy, tasks=tasks(2), seed=3, sampling=SAMPLING, max_batch=1)
    policy.close()
    assert [[r.input_ids for r in episode_to_rows(e)] for e in batched] == [[r.input_ids for r in episode_to_rows(e)] for e in single]
