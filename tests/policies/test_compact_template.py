"""The compact Kimi-K2-style template and its tokenizer: short prompts, atomic digits and markers,
round trips, and SFT rows whose mask covers exactly what the assistant wrote."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.envs.formats import get_format
from toolgym.envs.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage
from toolgym.policies.chat import ChatRenderer
from toolgym.policies.models.gold_episodes import DOMAINS, gold_conversations
from toolgym.policies.models.tokenizer import IM_END, KIMI_MARKERS, KIMI_SPECIAL_TOKENS, train_compact_tokenizer
from toolgym.trainers.demo_tasks import demo_split
from toolgym.trainers.sft import conversation_row


@functools.lru_cache(maxsize=1)
def tokenizer():
    return train_compact_tokenizer(vocab_size=1024, n_per_domain=20)


def test_demo_prompt_is_tens_of_tokens():
    task = demo_split("train", 1)[0]
    import toolgym

    env = toolgym.make("toolgym/unitconv-v0", tool_format="kimi_k2")
    obs, _ = env.reset(options={"task": task})
    prompt = ChatRenderer(tokenizer()).token_ids(obs.messages, obs.tools)
    assert len(prompt) < 100, len(prompt)  # the Hermes template with all six tools needed ~720
    text = ChatRenderer(tokenizer()).text(obs.messages, obs.tools)
    assert "convert(value:number,from_unit:string,to_unit:string)" in text


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[0-9]{1,9}(\.[0-9]{1,4})?", fullmatch=True), st.text(alphabet="abc _'", max_size=6))
def test_digits_are_single_tokens_and_text_round_trips(number, around):
    tok = tokenizer()
    text = f"{around}{number}{around}"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = [tok.decode([i]) for i in ids]
    assert all(len(p) == 1 for p in pieces if any(c.isdigit() for c in p))  # a digit is a token of its own
    assert tok.decode(ids) == text


def test_markers_and_turn_openers_are_one_token_each():
    tok = tokenizer()
    for marker in (*KIMI_MARKERS, *KIMI_SPECIAL_TOKENS, IM_END):
        assert len(tok.encode(marker, add_special_tokens=False)) == 1, marker


def _conversation(args: dict, answer: str) -> list:
    fmt = get_format("kimi_k2")
    call = ToolCall(id="functions.f:0", name="f", arguments=args)
    raw = fmt.render_turn("", [call])
    return [
        SystemMessage(content="Be brief."), UserMessage(content="do it"),
        AssistantMessage(content="", tool_calls=[call], raw=raw),
        ToolMessage(tool_call_id=call.id, name="f", content='{"ok": 1}'),
        AssistantMessage(content=answer, raw=answer),
    ]


json_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                        st.text(max_size=12), st.booleans())


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), json_values, max_size=3), st.text(max_size=30))
def test_sft_row_mask_covers_exactly_the_assistant_text(args, answer):
    tok = tokenizer()
    messages = _conversation(args, answer)
    row = conversation_row(tok, messages)
    trained = [i for i, m in zip(row.ids, row.mask, strict=True) if m]
    expected = "".join(m.raw + IM_END for m in messages if isinstance(m, AssistantMessage))
    assert tok.decode(trained) == expected
    full = tok.apply_chat_template([{"role": "system", "content": "Be brief."}], tokenize=False)
    assert tok.decode(row.ids).startswith(full)


def test_rendered_calls_parse_back_with_the_kimi_format():
    tok = tokenizer()
    call = {"name": "convert", "arguments": {"value": 12.5, "from_unit": "mi", "to_unit": "km"}}
    text = tok.apply_chat_template([{"role": "assistant", "content": "", "tool_calls": [{"function": call}]}], tokenize=False)
    body = text.split("<|im_middle|>", 1)[1].removesuffix(IM_END)
    parsed = get_format("kimi_k2").parse(body)
    assert not parsed.errors and parsed.tool_calls[0].name == "convert"
    assert parsed.tool_calls[0].arguments == call["arguments"]


def test_every_domain_renders_and_gets_a_row():
    tok = tokenizer()
    for env_id in DOMAINS:
        conv = gold_conversations(env_id, range(2))[0]
        row = conversation_row(tok, conv.messages, conv.tools)
        assert 0 < sum(row.mask) < len(row.ids)
