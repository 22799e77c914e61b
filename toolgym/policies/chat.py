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
from collections.abc import Iterable, Sequence
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


_BASE: tuple[Message, ...] = (UserMessage(content="."), AssistantMessage(content=".", raw="."))
"""A fixed conversation ending in an assistant turn: observation tokens are measured after it."""


class ChatRenderer:
    """Renders a conversation with a tokenizer's chat template, as text or as prompt token ids.

    ``prompt_ids`` is the token-faithful entry point: given the previous turn's prompt and
    sampled ids, it appends only the tokens of the new messages (see ``observation_ids``), so
    the model's own output is never re-tokenized.

    Args:
        tokenizer: A Hugging Face tokenizer that has a chat template.
        end_ids: Ids that end an assistant turn (default: the tokenizer's eos id).
    """

    def __init__(self, tokenizer: ChatTokenizer, end_ids: Iterable[int] | None = None):
        self.tokenizer = tokenizer
        eos = getattr(tokenizer, "eos_token_id", None)
        self.end_ids = set(end_ids) if end_ids is not None else ({int(eos)} if isinstance(eos, int) else set())
        self._base: tuple[list[int], int] | None | bool = False  # False: not computed yet

    def text(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        """The prompt text, ending with the opening of the next assistant turn."""
        return self.tokenizer.apply_chat_template(
            to_chat_dicts(messages), tools=tool_dicts(tools) or None, add_generation_prompt=True, tokenize=False
        )

    def token_ids(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        """The prompt as token ids (the template already holds every special token)."""
        return self._encode(self.text(messages, tools))

    def __call__(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        return self.token_ids(messages, tools)

    def prompt_ids(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), *,
        prefix_ids: Sequence[int] | None = None, prefix_messages: int = 0,
    ) -> list[int]:
        """The next prompt: ``prefix_ids`` extended by the new messages, or a full render.

        Args:
            messages: The whole conversation.
            tools: Tool specs (used only by a full render; the prefix already holds them).
            prefix_ids: The previous turn's prompt ids followed by its sampled ids.
            prefix_messages: How many leading ``messages`` the prefix covers.

        A full render is the stated fallback when there is no prefix, no new message, or a
        template whose output is not prefix-stable; the rollout records such a turn as a fork
        (``toolgym.rollouts.rows``), so its tokens never merge silently with the previous turn's.
        """
        if prefix_ids and 0 < prefix_messages < len(messages):
            tail = self.observation_ids(messages[prefix_messages:], last_sampled=prefix_ids[-1])
            if tail is not None:
                return [*prefix_ids, *tail]
        return self.token_ids(messages, tools)

    def observation_ids(self, new_messages: Sequence[Message], *, last_sampled: int | None = None) -> list[int] | None:
        """Tokens that follow a sampled assistant turn: its closing, the new messages, the next header.

        The fixed conversation ``_BASE`` (ending in an assistant turn) is rendered without and
        with ``new_messages``; the token difference is the new messages plus the next assistant
        header. The template's closing of the assistant turn comes first. When the model's last
        sampled id (``last_sampled``) is the template's end-of-turn token, the closing is what
        the template puts after that token (ChatML's newline, nothing for Kimi-style turns);
        otherwise (a length cut, a stop string, another end id) the template's end-of-turn
        token is added too, so every turn is closed the way the template closes it.

        Returns:
            The ids, or None when the template is not prefix-stable here (the longer render does
            not start with the shorter one's ids) or closes assistant turns with no end id.
        """
        base = self._base_ids()
        if base is None:
            return None
        base_ids, end_at = base
        dicts = to_chat_dicts([*_BASE, *new_messages])
        full = self._encode(self.tokenizer.apply_chat_template(dicts, add_generation_prompt=True, tokenize=False))
        if full[: len(base_ids)] != base_ids:
            return None
        closing = base_ids[end_at + 1 :] if last_sampled == base_ids[end_at] else base_ids[end_at:]
        return [*closing, *full[len(base_ids) :]]

    def _base_ids(self) -> tuple[list[int], int] | None:
        """``_BASE`` rendered as ids, and the index of its assistant turn's end-of-turn token."""
        if self._base is False:
            text = self.tokenizer.apply_chat_template(to_chat_dicts(_BASE), add_generation_prompt=False, tokenize=False)
            ids = self._encode(text)
            ends = [i for i, t in enumerate(ids) if t in self.end_ids]
            self._base = (ids, ends[-1]) if ends else None
        return self._base  # type: ignore[return-value]  # set in __init__ before any call

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))
