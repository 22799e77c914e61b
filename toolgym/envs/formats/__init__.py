"""Tool-call formats: how calls, tool specs and results look as text for each model family.

Every format splits reasoning (``<think>``, harmony's analysis channel, ``[THINK]``) into
``ParsedTurn.reasoning``, reads its own call syntax, and reports a call written in another
known format as a parse error naming that format. ``detect_format`` picks a format from a
chat template (``tool_format="auto"``).
"""

from __future__ import annotations

from toolgym.envs.formats.base import ParsedTurn, ParseError, ToolCallFormat
from toolgym.envs.formats.deepseek import DeepSeekFormat
from toolgym.envs.formats.detect import chat_template_of, detect_format, resolve_format
from toolgym.envs.formats.glm import GLM45Format
from toolgym.envs.formats.harmony import HarmonyFormat
from toolgym.envs.formats.hermes import HermesFormat
from toolgym.envs.formats.kimi import KimiK2Format
from toolgym.envs.formats.llama import Llama3JsonFormat
from toolgym.envs.formats.mistral import MistralFormat
from toolgym.envs.formats.openai_json import OpenAIFormat
from toolgym.envs.formats.qwen3_coder import Qwen3CoderFormat
from toolgym.errors import ConfigError, did_you_mean

FORMATS: dict[str, ToolCallFormat] = {
    f.name: f
    for f in (
        HermesFormat(), OpenAIFormat(), KimiK2Format(), DeepSeekFormat(), Llama3JsonFormat(),
        GLM45Format(), Qwen3CoderFormat(), HarmonyFormat(), MistralFormat(),
    )
}


def get_format(name: str | ToolCallFormat) -> ToolCallFormat:
    """The format called ``name`` (a key of ``FORMATS``); a format object passes through.

    ``"auto"`` is not a format: resolve it first with ``resolve_format("auto", chat_template)``.
    """
    if not isinstance(name, str):
        return name
    try:
        return FORMATS[name]
    except KeyError:
        if name == "auto":
            raise ConfigError(
                "tool_format='auto' needs the model's chat template to pick a format: resolve it with "
                "toolgym.envs.formats.resolve_format('auto', tokenizer.chat_template), or name the format "
                f"({', '.join(FORMATS)})."
            ) from None
        raise ConfigError(
            f"unknown tool-call format {name!r}.{did_you_mean(name, FORMATS)} Known formats: {', '.join(FORMATS)}."
        ) from None


__all__ = [
    "FORMATS", "get_format", "detect_format", "resolve_format", "chat_template_of", "ParsedTurn", "ParseError",
    "ToolCallFormat", "HermesFormat", "OpenAIFormat", "KimiK2Format", "DeepSeekFormat", "Llama3JsonFormat",
    "GLM45Format", "Qwen3CoderFormat", "HarmonyFormat", "MistralFormat",
]
