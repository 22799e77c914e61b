"""What a chat template needs to render tool use, found by rendering small probe conversations.

Templates disagree on the shape of the messages they accept: DeepSeek's concatenates a call's
``arguments`` as a string where most expect an object; a few read a tool message's ``name``
while Kimi K2-0905/Thinking put ``message.name or role`` in the header (so sending a ``name``
that OpenAI-style clients never send renders an off-distribution role); gpt-oss refuses a
tool message that answers no assistant call. ``probe_template`` renders one short tool-use
conversation in each candidate shape and keeps the first one the template accepts *and*
renders in full (the call's name and the result's text both appear), which is the shape a
deployment server would have to send too.

A template that renders no shape raises ``TemplateError`` before any work starts, naming
what failed and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from toolgym.errors import ConfigError

ArgumentsForm = Literal["object", "json"]

PROBE_TOOL = "toolgym_probe_lookup"
PROBE_RESULT = "toolgym-probe-result-7301"
_PROBE_TOOLS = [{
    "type": "function",
    "function": {
        "name": PROBE_TOOL, "description": "Look a key up.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    },
}]


class TemplateError(ConfigError):
    """A chat template cannot render tool use (tool calls or tool results) in any known shape."""


@dataclass(frozen=True)
class TemplateProfile:
    """The message shape a template accepts for tool use.

    Attributes:
        arguments: Tool-call arguments as a JSON ``"object"`` or a ``"json"`` string.
        tool_names: Tool messages carry ``name`` (only when the template fails without it).
        orphan_tools_as_user: A tool message answering no call (a parse-error observation) is
            sent as a user message, because the template refuses it as a tool message.
        nine_char_ids: The template accepts only 9-character alphanumeric call ids (Mistral
            Small 3.x); the model writes such ids itself, and toolgym keeps the ids it wrote.
    """

    arguments: ArgumentsForm = "object"
    tool_names: bool = False
    orphan_tools_as_user: bool = False
    nine_char_ids: bool = False


def _probe_messages(profile: TemplateProfile) -> list[dict[str, Any]]:
    arguments: Any = {"key": "alpha"}
    if profile.arguments == "json":
        arguments = '{"key": "alpha"}'
    call = {"id": "a1B2c3D4e" if profile.nine_char_ids else f"functions.{PROBE_TOOL}:0", "type": "function", "function": {"name": PROBE_TOOL, "arguments": arguments}}
    tool: dict[str, Any] = {"role": "tool", "tool_call_id": call["id"], "content": PROBE_RESULT}
    if profile.tool_names:
        tool["name"] = PROBE_TOOL
    return [
        {"role": "user", "content": "Look up alpha."},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        tool,
    ]


def _render(tokenizer: Any, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> str:
    return tokenizer.apply_chat_template(messages, tools=_PROBE_TOOLS, add_generation_prompt=True, tokenize=False, **kwargs)


def probe_template(tokenizer: Any, chat_template_kwargs: dict[str, Any] | None = None) -> TemplateProfile:
    """The first message shape the tokenizer's chat template renders tool use in.

    Raises:
        TemplateError: No shape renders, or the rendering drops the tool call or its result.
    """
    kwargs = dict(chat_template_kwargs or {})
    failures: list[str] = []
    shapes = [(a, n, ids) for ids in (False, True) for a in ("object", "json") for n in (False, True)]
    for arguments, tool_names, nine_char_ids in shapes:
        profile = TemplateProfile(arguments=arguments, tool_names=tool_names, nine_char_ids=nine_char_ids)  # type: ignore[arg-type]
        try:
            text = _render(tokenizer, _probe_messages(profile), kwargs)
        except Exception as exc:  # each template fails its own way; the message is the clue
            failures.append(
                f"arguments as {arguments}{' + tool name' if tool_names else ''}{' + 9-char ids' if nine_char_ids else ''}: "
                f"{type(exc).__name__}: {exc}"
            )
            continue
        missing = [what for what, marker in (("the tool call", PROBE_TOOL), ("the tool result", PROBE_RESULT)) if marker not in text]
        if missing:
            raise TemplateError(
                f"the chat template renders a tool-use conversation without {' and '.join(missing)}; "
                "a policy using it would never see its calls or their results. Use a template made for tool use "
                "(one that renders assistant 'tool_calls' and 'tool' messages)."
            )
        orphans = _refuses_orphans(tokenizer, kwargs, nine_char_ids)
        return TemplateProfile(profile.arguments, tool_names, orphans, nine_char_ids)
    raise TemplateError(
        "the chat template cannot render a tool call followed by its result in any shape toolgym knows "
        "(arguments as an object or a JSON string, tool messages with or without 'name', any or 9-character call ids):\n  "
        + "\n  ".join(f[:300] for f in failures)
        + "\nFix the template, or pass one with chat_template=... that renders 'tool_calls' and 'tool' messages."
    )


def _refuses_orphans(tokenizer: Any, kwargs: dict[str, Any], nine_char_ids: bool) -> bool:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<tool_call>{broken"},
        {"role": "tool", "tool_call_id": "z9Y8x7W6v" if nine_char_ids else "call_0", "content": "error: unreadable call"},
    ]
    try:
        _render(tokenizer, messages, kwargs)
    except Exception:  # the template validates message order (gpt-oss): send such errors as user turns
        return True
    return False
