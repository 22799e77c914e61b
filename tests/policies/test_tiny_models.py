"""Tiny MoE models built offline: shapes, sizes, save/load, tokenizer and chat template."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

import toolgym
from toolgym.envs.formats import HermesFormat
from toolgym.envs.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.chat import ChatRenderer, to_chat_dicts, tool_dicts
from toolgym.policies.models import cached_tiny_model, count_parameters, model_config, shape


@pytest.fixture(scope="module")
def kimi_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cached_tiny_model("kimi"))


@pytest.fixture(scope="module")
def unitconv_tools():
    env = toolgym.make("toolgym/unitconv-v0")
    obs, _ = env.reset(seed=0)
    return obs.tools


def _render(tokenizer, messages, tools=(), generation=False):
    return tokenizer.apply_chat_template(
        to_chat_dicts(messages, history="structured"), tools=tool_dicts(tools) or None,
        add_generation_prompt=generation, tokenize=False,
    )


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_tiny_shapes_are_cpu_sized_moe(kind):
    counts = count_parameters(model_config(kind, "tiny", vocab_size=2000))
    assert 1_000_000 <= counts["total"] <= 5_000_000
    assert counts["active"] < counts["total"]  # routed experts: only top-k run per token


@pytest.mark.parametrize("kind", ["kimi", "qwen3"])
def test_half_billion_shapes_count_on_the_meta_device(kind):
    counts = count_parameters(model_config(kind, "0.5b"))
    assert 400_000_000 <= counts["total"] <= 600_000_000
    assert counts["active"] < counts["total"] / 2


def test_kimi_shape_keeps_kimi_k2_traits():
    config = model_config("kimi", "tiny", vocab_size=2000)
    assert config.model_type == "deepseek_v3"
    assert (config.first_k_dense_replace, config.n_shared_experts, config.n_group, config.topk_group) == (1, 1, 1, 1)
    assert config.kv_lora_rank < config.hidden_size and config.q_lora_rank < config.hidden_size  # MLA
    assert config.output_router_logits is False


def test_unknown_shape_names_the_choices():
    with pytest.raises(ConfigError, match="kinds are 'kimi' and 'qwen3', sizes 'tiny' and '0.5b'"):
        shape("llama", "tiny")


@pytest.mark.parametrize(("kind", "arch"), [("kimi", "DeepseekV3ForCausalLM"), ("qwen3", "Qwen3MoeForCausalLM")])
def test_built_model_loads_with_the_auto_classes(kind, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cached_tiny_model(kind)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == arch
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.chat_template and "<tool_call>" in tokenizer.chat_template


def test_weights_follow_the_seed(tmp_path):
    import torch
    from safetensors.torch import load_file

    from toolgym.policies.models import build_tiny_model

    a = load_file(build_tiny_model("qwen3", tmp_path / "a", seed=3, n_tasks=20) / "model.safetensors")
    b = load_file(build_tiny_model("qwen3", tmp_path / "b", seed=3, n_tasks=20) / "model.safetensors")
    c = load_file(build_tiny_model("qwen3", tmp_path / "c", seed=4, n_tasks=20) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tokenizer_is_lossless_and_compact_on_tool_calls(kimi_tokenizer):
    tok = kimi_tokenizer
    for tag in ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"):
        assert len(tok.encode(tag, add_special_tokens=False)) == 1
    call = HermesFormat().render_turn("", [ToolCall(id="c", name="convert", arguments={"value": 3.5, "from_unit": "mi", "to_unit": "km"})])
    ids = tok.encode(call, add_special_tokens=False)
    assert len(call) / len(ids) >= 2.5, f"{len(ids)} tokens for {len(call)} characters"
    for text in (call, "naïve café ✓ 数学 🙂\t\n  spaced", "<|im_start|>user\nhi<|im_end|>"):
        assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=False) == text


def test_tool_section_is_hermes_render_tools(kimi_tokenizer, unitconv_tools):
    text = _render(kimi_tokenizer, [SystemMessage(content="Be exact."), UserMessage(content="hi")], unitconv_tools)
    expected = "<|im_start|>system\nBe exact.\n\n" + HermesFormat().render_tools(unitconv_tools) + "<|im_end|>\n"
    assert text.startswith(expected)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n")


def test_assistant_tool_calls_round_trip_through_the_hermes_parser(kimi_tokenizer):
    calls = [
        ToolCall(id="a", name="convert", arguments={"value": 2, "from_unit": "kg", "to_unit": "lb"}),
        ToolCall(id="b", name="store", arguments={"name": "total_1", "value": 4.4092, "note": "ünïcode \"q\""}),
    ]
    for content in ("Let me check.", ""):
        text = _render(kimi_tokenizer, [UserMessage(content="x"), AssistantMessage(content=content, tool_calls=calls)])
        turn = text.split("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
        assert turn == HermesFormat().render_turn(content, calls)
        parsed = HermesFormat().parse(turn)
        assert parsed.errors == [] and parsed.content == content
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in calls]


def test_raw_assistant_text_is_rendered_verbatim(kimi_tokenizer):
    raw = ' odd <tool_call>{"name": broken\n</tool_call> tail  '
    message = AssistantMessage(content="ignored", tool_calls=[ToolCall(id="a", name="f")], raw=raw)
    text = kimi_tokenizer.apply_chat_template(to_chat_dicts([UserMessage(content="x"), message]), tokenize=False)
    assert f"<|im_start|>assistant\n{raw}<|im_end|>\n" in text
    assert "ignored" not in text


def test_consecutive_tool_results_share_one_user_turn(kimi_tokenizer):
    messages = [
        UserMessage(content="go"),
        AssistantMessage(tool_calls=[ToolCall(id="a", name="f"), ToolCall(id="b", name="g")]),
        ToolMessage(tool_call_id="a", name="f", content="1"),
        ToolMessage(tool_call_id="b", name="g", content="2"),
    ]
    text = _render(kimi_tokenizer, messages, generation=True)
    assert text.endswith(
        "<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_renderer_token_ids_are_the_encoded_prompt(kimi_tokenizer, unitconv_tools):
    renderer = ChatRenderer(kimi_tokenizer)
    messages = [SystemMessage(content="s"), UserMessage(content="Convert 3 mi to km.")]
    text = renderer.text(messages, unitconv_tools)
    assert text.endswith("<|im_start|>assistant\n")
    ids = renderer(messages, unitconv_tools)
    assert ids == kimi_tokenizer.encode(text, add_special_tokens=False)
    assert ids[0] == kimi_tokenizer.convert_tokens_to_ids("<|im_start|>")
