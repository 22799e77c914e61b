"""Tool-call formats: how calls, tool specs and results look as text for each model family."""

from __future__ import annotations

from toolgym.envs.formats.base import ParsedTurn, ParseError, ToolCallFormat
from toolgym.envs.formats.hermes import HermesFormat
from toolgym.envs.formats.kimi import KimiK2Format
from toolgym.envs.formats.openai_json import OpenAIFormat
from toolgym.errors import ConfigError, did_you_mean

FORMATS: dict[str, ToolCallFormat] = {f.name: f for f in (HermesFormat(), OpenAIFormat(), KimiK2Format())}


def get_format(name: str | ToolCallFormat) -> ToolCallFormat:
    """The format called ``name`` ("hermes", "openai", "kimi_k2"); a format object passes through."""
    if not isinstance(name, str):
        return name
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"unknown tool-call format {name!r}.{did_you_mean(name, FORMATS)} Known formats: {', '.join(FORMATS)}."
        ) from None


__all__ = ["FORMATS", "get_format", "ParsedTurn", "ParseError", "ToolCallFormat", "HermesFormat", "OpenAIFormat", "KimiK2Format"]
