"""Test-only model families: toolgym's own template per family and a small tokenizer carrying its special tokens.

The templates under ``templates/`` were written for toolgym to reproduce each family's format and quirks;
they are not the genuine files (see each template's header comment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"

QWEN = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
KIMI = ("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>", "<|endoftext|>",
        "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")
DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
            "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
            "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>")
LLAMA = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>")
GLM = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", "<|endoftext|>")
HARMONY = ("<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|constrain|>", "<|call|>", "<|return|>", "<|endoftext|>")
MISTRAL = ("<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
           "[TOOL_CALLS]", "[CALL_ID]", "[ARGS]", "[TOOL_RESULTS]", "[TOOL_CONTENT]", "[/TOOL_RESULTS]")


@dataclass(frozen=True)
class Family:
    """A model family as the tests drive it."""

    template: str
    specials: tuple[str, ...]
    ends: tuple[str, ...]
    """End-of-turn tokens (the generation config's eos ids)."""
    pad: str
    tool_format: str
    bos: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    rewrites: bool = False
    """The template rewrites history on the generated conversation (rows start there)."""


FAMILIES: dict[str, Family] = {
    "qwen25": Family("qwen25", QWEN, ("<|im_end|>",), "<|endoftext|>", "hermes"),
    "qwen3": Family("qwen3", QWEN, ("<|im_end|>",), "<|endoftext|>", "hermes", rewrites=True),
    "qwen3_nothink": Family("qwen3", QWEN, ("<|im_end|>",), "<|endoftext|>", "hermes", kwargs={"enable_thinking": False}, rewrites=True),
    "hermes3": Family("hermes3", QWEN + ("<|begin_of_text|>",), ("<|im_end|>",), "<|endoftext|>", "hermes", bos="<|begin_of_text|>", rewrites=True),
    "kimi_k2": Family("kimi_k2", KIMI, ("<|im_end|>",), "<|endoftext|>", "kimi_k2"),
    "kimi_k2_thinking": Family("kimi_k2_thinking", KIMI, ("<|im_end|>",), "<|endoftext|>", "kimi_k2", rewrites=True),
    "glm45": Family("glm45", GLM, ("<|user|>", "<|observation|>", "<|endoftext|>"), "<|endoftext|>", "glm45", rewrites=True),
    "deepseek_v31": Family("deepseek_v31", DEEPSEEK, ("<｜end▁of▁sentence｜>",), "<｜end▁of▁sentence｜>", "deepseek", bos="<｜begin▁of▁sentence｜>"),
    "llama31": Family("llama31", LLAMA, ("<|eot_id|>", "<|eom_id|>"), "<|finetune_right_pad_id|>", "llama3_json", bos="<|begin_of_text|>"),
    "qwen3_coder": Family("qwen3_coder", QWEN, ("<|im_end|>",), "<|endoftext|>", "qwen3_coder"),
    "gpt_oss": Family("gpt_oss", HARMONY, ("<|call|>", "<|return|>"), "<|endoftext|>", "harmony", kwargs={"reasoning_effort": "low"}, rewrites=True),
    "mistral": Family("mistral", MISTRAL, ("</s>",), "<pad>", "mistral", bos="<s>", rewrites=True),
}


def template_text(name: str) -> str:
    """One of toolgym's test templates."""
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


@cache
def family_tokenizer(name: str) -> Any:
    """A byte-level BPE tokenizer (a few hundred merges, trained in-process on the family's own renderings)
    whose special tokens are the family's, each one id; eos is the family's first end token."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    fam = FAMILIES[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, special_tokens=list(fam.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(fam), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fam.specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=fam.ends[0], pad_token=fam.pad, bos_token=fam.bos, chat_template=template_text(fam.template),
        clean_up_tokenization_spaces=False,
    )


def end_ids(name: str) -> list[int]:
    """The family's end-of-turn ids in its tokenizer."""
    return list(family_tokenizer(name).convert_tokens_to_ids(list(FAMILIES[name].ends)))


def _corpus(fam: Family) -> list[str]:
    """The family's rendering of the checked conversation, so common pieces become single tokens."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from toolgym.policies.chat import ChatRenderer
    from toolgym.policies.template_check import TOOLS, generated_conversation

    blank = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), chat_template=template_text(fam.template),
                                    bos_token=fam.bos, eos_token=fam.ends[0])
    renderer = ChatRenderer(blank, end_ids=[], chat_template_kwargs=fam.kwargs)
    texts = []
    for parallel in (True, False):
        try:
            texts.append(renderer.text(generated_conversation(parallel, reasoning=True), TOOLS, generation_prompt=False))
        except Exception:  # a template that refuses parallel calls: the single-call rendering is enough
            continue
    for special in fam.specials:  # special tokens are whole tokens; keep them out of the merges
        texts = [t.replace(special, " ") for t in texts]
    return texts * 2


def tiny_model(name: str, seed: int = 0) -> Any:
    """A one-layer Qwen3-MoE with the family tokenizer's vocabulary and end ids (random weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from toolgym.policies.models.configs import model_config

    tokenizer = family_tokenizer(name)
    config = model_config(
        "qwen3", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=end_ids(name),
        num_hidden_layers=1, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, num_experts=4, max_position_embeddings=8192,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
