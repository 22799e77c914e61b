"""Which tool-call format a piece of text is in: model output (to name a format the env was
not told to expect) and chat templates (``tool_format="auto"``).

Both look for markers that only one family uses. Order matters where families share a tag:
GLM-4.5 and Qwen3-Coder wrap their calls in Hermes' ``<tool_call>``, so their own inner
markers are checked first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from toolgym.errors import ConfigError

# (format, markers that only it writes in a call, a pattern for markers that are not fixed text)
_TEXT_SIGNS: tuple[tuple[str, tuple[str, ...], re.Pattern[str] | None], ...] = (
    ("harmony", ("<|channel|>", "<|constrain|>", "<|call|>"), re.compile(r"\bto=functions\.")),
    ("deepseek", ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>"), None),
    ("kimi_k2", ("<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>"), None),
    ("mistral", ("[TOOL_CALLS]", "[ARGS]"), None),
    ("glm45", ("<arg_key>", "<arg_value>"), None),
    ("qwen3_coder", ("<function=", "<parameter="), None),
    # an OpenAI message holds Llama-looking {"name": ..., "arguments": ...} objects: test it first
    ("openai", (), re.compile(r'"tool_calls"\s*:\s*\[')),
    ("hermes", ("<tool_call>\n{", "<tool_call>{"), re.compile(r"<tool_call>\s*\{")),
    ("llama3_json", ("<|python_tag|>",), re.compile(r'\{\s*"name"\s*:\s*"[^"]*"\s*,\s*"(?:parameters|arguments)"\s*:')),
)


def format_seen(text: str, own: str, own_markers: Iterable[str] = (), patterns: bool = True) -> str | None:
    """The first other format whose call markers appear in ``text``, or None.

    A marker the env's own format also uses (``own_markers``) proves nothing and is skipped.
    ``patterns=False`` looks for fixed markers only: the JSON shapes of Llama and OpenAI calls
    also occur inside other formats' calls, so they only count in text outside any call.
    """
    if "<" not in text and "[" not in text and "{" not in text:
        return None  # every sign holds one of these: most answers end here
    skip = set(own_markers)
    for name, markers, pattern in _TEXT_SIGNS:
        if name == own:
            continue
        if any(m in text for m in markers if m not in skip) or (patterns and pattern is not None and pattern.search(text)):
            return name
    return None


# (format, test on the template text); first match wins.
_TEMPLATE_SIGNS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    # each inner tuple is one alternative: all of its strings must appear
    ("harmony", (("<|channel|>", "<|message|>"),)),
    ("deepseek", (("tool▁calls▁begin",), ("tool▁call▁begin",))),
    ("kimi_k2", (("<|tool_calls_section_begin|>",), ("<|tool_call_begin|>",))),
    ("glm45", (("<arg_key>",),)),
    ("qwen3_coder", (("<function=", "<parameter="),)),
    ("mistral", (("[TOOL_CALLS]",),)),
    ("llama3_json", (("<|python_tag|>",), ("<|start_header_id|>", '"parameters"'), ("<|start_header_id|>", "ipython"))),
    ("hermes", (("<tool_call>",),)),
)


def detect_format(chat_template: str, special_tokens: Iterable[str] = ()) -> str:
    """The tool-call format a chat template teaches its model.

    Looks at the template text and, when given, the tokenizer's special tokens (some
    templates name their call markers only through variables). Works for the families in
    ``toolgym/envs/formats/`` (Hermes/Qwen, Qwen3-Coder, Kimi K2, DeepSeek, Llama 3.x, GLM-4.5,
    gpt-oss harmony, Mistral).

    >>> detect_format("{{ '<tool_call>' }}{{ message.content }}")
    'hermes'

    Raises:
        ConfigError: nothing in the template (or tokens) marks a known tool-call format.
    """
    if not isinstance(chat_template, str):
        raise ConfigError(f"chat_template must be the template's text (a str), got {type(chat_template).__name__}")
    text = chat_template + "\n" + "\n".join(special_tokens)
    for name, alternatives in _TEMPLATE_SIGNS:
        if any(all(s in text for s in alt) for alt in alternatives):
            return name
    head = " ".join(chat_template.split())[:120]
    raise ConfigError(
        "tool_format='auto' found no known tool-call format in the chat template "
        f"(it starts {head!r}): it has none of <tool_call>, <|tool_calls_section_begin|>, "
        "<｜tool▁calls▁begin｜>, <|python_tag|>, <arg_key>, <function=, <|channel|>, [TOOL_CALLS]. "
        "Name the format instead (tool_format='hermes', 'kimi_k2', 'deepseek', 'llama3_json', 'glm45', "
        "'qwen3_coder', 'harmony', 'mistral' or 'openai'), or give the model a template that can render tool calls."
    )


def chat_template_of(model_dir: str | Path) -> str:
    """The chat template text of a local model folder, read without loading transformers.

    Looks at ``chat_template.jinja`` and then ``tokenizer_config.json``'s ``chat_template``
    (a string, or a list of named templates, of which ``tool_use`` or ``default`` is taken).

    Raises:
        ConfigError: the folder has neither.
    """
    folder = Path(model_dir)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("tool_use") or named.get("default")
        if isinstance(template, str):
            return template
    raise ConfigError(
        f"tool_format='auto' needs the model's chat template, and {str(folder)!r} has no chat_template.jinja "
        "and no chat_template in tokenizer_config.json. Name the tool format instead (--format hermes, ...)."
    )


def resolve_format(name: str, chat_template: str | None = None, special_tokens: Iterable[str] = ()) -> str:
    """A concrete format name: ``"auto"`` is detected from ``chat_template``; others pass through.

    Raises:
        ConfigError: ``"auto"`` without a template, or a template with no known format.
    """
    if name != "auto":
        return name
    if chat_template is None:
        raise ConfigError(
            "tool_format='auto' picks the format from a model's chat template, and none was given here: "
            "pass the template (resolve_format('auto', tokenizer.chat_template)), a model folder "
            "(toolgym rollout --policy hf --model DIR --format auto), or name the format (e.g. 'hermes')."
        )
    return detect_format(chat_template, special_tokens)
