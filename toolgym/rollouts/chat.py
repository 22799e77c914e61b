"""toolgym messages as chat-template dicts, and prompts as token ids.

Hugging Face chat templates and OpenAI-compatible servers both read conversations as lists
of ``{"role": ..., "content": ...}`` dicts. This module is the one place that turns toolgym's
typed messages and tool specs into that form, so the local policy, the HTTP client and the
server render a conversation the same way.

Two ways to show past assistant turns:

* ``"raw"`` (default): an assistant message that has ``raw`` text (what the policy actually
  produced) is sent as that text, verbatim, with no structured ``tool_calls``. The prompt then
  holds exactly the characters the model wrote, which keeps local models and self-hosted
  servers (vLLM, SGLang, ``toolgym serve``) token-faithful.
* ``"structured"``: assistant turns carry ``content`` plus OpenAI ``tool_calls``, and error
  observations that answer no call (parse errors) become user messages. Hosted APIs need this
  form, since they reject ``tool`` messages that answer no preceding call.

>>> from toolgym.envs.types import AssistantMessage, ToolCall
>>> msg = AssistantMessage(content="", tool_calls=[ToolCall(id="c0", name="f", arguments={"x": 1})], raw="<tool_call>...")
>>> to_chat_dicts([msg])[0]["content"]
'<tool_call>...'
>>> to_chat_dicts([msg], history="structured")[0]["tool_calls"][0]["function"]
{'name': 'f', 'arguments': {'x': 1}}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from toolgym.envs.types import AssistantMessage, Message, SystemMessage, ToolMessage, ToolSpec, UserMessage

History = Literal["raw", "structured"]
ArgumentsForm = Literal["object", "json"]


def tool_dicts(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool specs in OpenAI function-calling form, keys in the order ``model_dump`` gives them."""
    return [t.model_dump() for t in tools]


def to_chat_dicts(
    messages: Sequence[Message], *, history: History = "raw", arguments: ArgumentsForm = "object"
) -> list[dict[str, Any]]:
    """Messages as chat dicts for a chat template or an OpenAI-compatible request.

    Args:
        messages: The conversation so far.
        history: ``"raw"`` sends an assistant turn's ``raw`` text verbatim when it has one;
            ``"structured"`` sends ``content`` plus ``tool_calls`` (see the module docstring).
        arguments: Tool-call arguments as a JSON ``"object"`` (what chat templates expect) or
            as a ``"json"`` string (what the OpenAI API expects).
    """
    answered = {c.id for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, (SystemMessage, UserMessage)):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, AssistantMessage):
            out.append(_assistant_dict(m, history, arguments))
        elif history == "structured" and m.tool_call_id not in answered:
            # A parse-error observation answers no call; hosted APIs would refuse it as a tool message.
            out.append({"role": "user", "content": m.content})
        else:
            out.append(_tool_dict(m))
    return out


def _assistant_dict(m: AssistantMessage, history: History, arguments: ArgumentsForm) -> dict[str, Any]:
    if history == "raw" and m.raw is not None:
        return {"role": "assistant", "content": m.raw}
    data: dict[str, Any] = {"role": "assistant", "content": m.content}
    if m.tool_calls:
        data["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": json.dumps(c.arguments, ensure_ascii=False) if arguments == "json" else c.arguments,
                },
            }
            for c in m.tool_calls
        ]
    return data


def _tool_dict(m: ToolMessage) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": m.tool_call_id, "name": m.name, "content": m.content}


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer that rendering needs."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...


class ChatRenderer:
    """Renders a conversation with a tokenizer's chat template, as text or as prompt token ids.

    Args:
        tokenizer: A Hugging Face tokenizer that has a chat template.
    """

    def __init__(self, tokenizer: ChatTokenizer):
        self.tokenizer = tokenizer

    def text(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        """The prompt text, ending with the opening of the next assistant turn."""
        return self.tokenizer.apply_chat_template(
            to_chat_dicts(messages), tools=tool_dicts(tools) or None, add_generation_prompt=True, tokenize=False
        )

    def token_ids(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        """The prompt as token ids (the template already holds every special token)."""
        return list(self.tokenizer.encode(self.text(messages, tools), add_special_tokens=False))

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        return self.token_ids(messages, tools)
