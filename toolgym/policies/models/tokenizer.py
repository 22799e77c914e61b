"""A byte-level BPE tokenizer trained in-process on conversations toolgym renders itself.

No tokenizer can be downloaded here, and none needs to be: the tiny policies only have to
read and write toolgym conversations. The training text is UnitConv episodes replayed with
their gold solutions and rendered through the chat template, so the tool section, the JSON
of tool calls and the ``<tool_call>`` tags all tokenize compactly.

The chat template (``chat_template.jinja`` next to this file) renders ChatML turns
(``<|im_start|>role ... <|im_end|>``), the tool section exactly as
``HermesFormat().render_tools`` writes it, tool results in ``<tool_response>`` tags, and
assistant tool calls in the Hermes format, so ``HermesFormat.parse`` reads what it renders.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)
"""Control tokens; ``<|endoftext|>`` pads, ``<|im_end|>`` ends a turn."""
TEXT_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>")
"""Single tokens that stay in decoded text (not special), so a call's tags cost one token each."""
CORPUS_VERSION = 1
"""Bump when the training text changes, so cached tokenizers are rebuilt."""
KIMI_SPECIAL_TOKENS = ("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>")
"""Turn openers of the compact Kimi-K2-style template (``<|im_end|>`` closes every turn)."""
KIMI_MARKERS = (
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>",
)
"""Kimi K2 tool-call markers, one token each (they stay in decoded text, where the env parses them)."""
TEMPLATES = {"hermes": "chat_template.jinja", "kimi_compact": "kimi_compact.jinja"}
"""Chat templates shipped next to this file, by name."""


@lru_cache(maxsize=4)
def chat_template(name: str = "hermes") -> str:
    """A Jinja chat template shipped with toolgym's tiny models (``"hermes"`` or ``"kimi_compact"``)."""
    if name not in TEMPLATES:
        from toolgym.errors import ConfigError

        raise ConfigError(f"unknown chat template {name!r}; shipped: {', '.join(TEMPLATES)}")
    return resources.files(__package__).joinpath(TEMPLATES[name]).read_text(encoding="utf-8")


def _renderer(template: str = "hermes") -> Any:
    """A vocabulary-less tokenizer, used only to render the template before training."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), chat_template=chat_template(template))


def training_corpus(n_tasks: int = 300, seed: int = 0) -> list[str]:
    """Rendered UnitConv conversations: system prompt, tools, gold tool calls, results, answer.

    Args:
        n_tasks: How many tasks (seeds ``seed .. seed + n_tasks - 1``) to replay.
        seed: First task seed.
    """
    import toolgym
    from toolgym.envs.formats import HermesFormat
    from toolgym.envs.types import ToolCall
    from toolgym.policies.chat import to_chat_dicts, tool_dicts

    renderer, hermes = _renderer(), HermesFormat()
    env = toolgym.make("toolgym/unitconv-v0")
    texts: list[str] = []
    for task_seed in range(seed, seed + n_tasks):
        obs, _ = env.reset(seed=task_seed)
        task = env.task
        for i, gold in enumerate(task.gold_actions):
            prefix = "Let me check." if (task_seed + i) % 3 == 0 else ""
            env.step(hermes.render_turn(prefix, [ToolCall(id=f"c{i}", name=gold.name, arguments=gold.arguments)]))
        env.step(task.gold_answer or "Done.")
        chat = to_chat_dicts(env.messages)
        texts.append(renderer.apply_chat_template(chat, tools=tool_dicts(obs.tools), tokenize=False))
    env.close()
    return texts


def train_tokenizer(vocab_size: int = 4096, n_tasks: int = 300, seed: int = 0) -> Any:
    """Train a byte-level BPE tokenizer on ``training_corpus`` and wrap it for transformers.

    Args:
        vocab_size: Upper bound on the vocabulary (the corpus may give fewer merges).
        n_tasks: Conversations to train on.
        seed: First task seed of the corpus.

    Returns:
        A ``PreTrainedTokenizerFast`` with the chat template, ``<|im_end|>`` as end of turn and
        ``<|endoftext|>`` as padding.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(n_tasks, seed), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=chat_template(),
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def compact_corpus(n_per_domain: int = 150, seed: int = 0) -> list[str]:
    """Gold conversations of every shipped domain, rendered with the compact template.

    Args:
        n_per_domain: Task seeds replayed per domain (``seed .. seed + n_per_domain - 1``).
        seed: First task seed.
    """
    from toolgym.policies.chat import to_chat_dicts, tool_dicts
    from toolgym.policies.models.gold_episodes import DOMAINS, gold_conversations

    renderer = _renderer("kimi_compact")
    texts = []
    for env_id in DOMAINS:
        for conv in gold_conversations(env_id, range(seed, seed + n_per_domain)):
            texts.append(renderer.apply_chat_template(to_chat_dicts(conv.messages), tools=tool_dicts(conv.tools), tokenize=False))
    return texts


def train_compact_tokenizer(vocab_size: int = 2048, n_per_domain: int = 150, seed: int = 0) -> Any:
    """A byte-level BPE tokenizer for the compact Kimi-K2-style template.

    Unlike ``train_tokenizer`` it keeps every digit a token of its own (so copying a number is
    copying its digits one by one, the same way wherever the number appears) and makes each
    turn opener and tool-call marker a single token.

    Args:
        vocab_size: Upper bound on the vocabulary.
        n_per_domain: Gold conversations per shipped domain in the training text.
        seed: First task seed of the corpus.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [*SPECIAL_TOKENS, *KIMI_SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    corpus = compact_corpus(n_per_domain, seed)
    for marker in KIMI_MARKERS:  # keep markers out of the merges; they become whole tokens below
        corpus = [text.replace(marker, " ") for text in corpus]
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in KIMI_MARKERS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, chat_template=chat_template("kimi_compact"),
        padding_side="left", clean_up_tokenization_spaces=False,
    )
