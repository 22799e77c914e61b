"""toolgym messages as chat-template dicts, and prompts as token ids.

Hugging Face chat templates and OpenAI-compatible servers both read conversations as lists
of ``{"role": ..., "content": ...}`` dicts. This module is the one place that turns toolgym's
typed messages and tool specs into that form, so the local policy, the HTTP client and the
server render a conversation the same way.

Two ways to send past assistant turns to an OpenAI-compatible endpoint (``to_chat_dicts``):

* ``"raw"`` (default): an assistant message that has ``raw`` text (what the policy actually
  produced) is sent as that text, verbatim, with no structured ``tool_calls``.
* ``"structured"``: assistant turns carry ``content`` plus OpenAI ``tool_calls``, and error
  observations that answer no call (parse errors) become user messages. Hosted APIs need this
  form, since they reject ``tool`` messages that answer no preceding call.

Local rendering (``ChatRenderer``) uses the *deployment* form (``deployment_dicts``): what an
OpenAI-style client sends back to a server that parsed the model's calls and reasoning, in the
shape the template accepts (``toolgym.policies.template_probe``). Prompts are compared with that
rendering turn by turn, so a template that rewrites history is caught, never mixed in silently.

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
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from toolgym.envs.types import AssistantMessage, Message, SystemMessage, ToolMessage, ToolSpec, UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.template_probe import ArgumentsForm, TemplateProfile, probe_template

History = Literal["raw", "structured"]


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



def deployment_dicts(messages: Sequence[Message], profile: TemplateProfile | None = None) -> list[dict[str, Any]]:
    """Messages as an OpenAI-style client sends them back to a server that renders the template.

    Assistant turns carry ``content``, ``tool_calls`` and their reasoning (as ``reasoning_content``,
    and ``thinking`` for gpt-oss), plus ``raw``, which only toolgym's own templates read (they
    render the policy's text verbatim). Tool messages carry no ``name`` unless the template needs
    one (``TemplateProfile.tool_names``): Kimi K2-0905/Thinking name the role after it.
    """
    profile = profile or TemplateProfile()
    answered = {c.id for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, (SystemMessage, UserMessage)):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, AssistantMessage):
            data = _assistant_dict(AssistantMessage(content=m.content, tool_calls=m.tool_calls), "structured", profile.arguments)
            reasoning = getattr(m, "reasoning", None)
            if reasoning:
                data["reasoning_content"] = data["thinking"] = reasoning
            if m.raw is not None:
                data["raw"] = m.raw
            out.append(data)
        elif profile.orphan_tools_as_user and m.tool_call_id not in answered:
            out.append({"role": "user", "content": m.content})
        else:
            tool = {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
            out.append({**tool, "name": m.name} if profile.tool_names else tool)
    return out


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer that rendering needs."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, ids: Any, **kwargs: Any) -> str: ...


HistoryRewrite = Literal["new_row", "keep_row"]
"""What to do when the template renders history differently from what was sampled:
``"new_row"`` prompts with the deployment rendering (the rollout starts a new row there, counted
as a fork); ``"keep_row"`` keeps the sampled ids and appends only the new messages' tokens."""
PromptStart = Literal["full", "extend", "new_row", "keep_row"]


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt and how it relates to the previous turn.

    Attributes:
        ids: The prompt token ids.
        start: ``"full"`` (first turn, or no prefix), ``"extend"`` (the previous ids plus the
            template's tokens for the new messages, equal to the deployment rendering),
            ``"new_row"`` (the deployment rendering; history was rewritten) or ``"keep_row"``
            (the sampled ids kept although deployment renders them differently).
        reason: For the last two: where and how the deployment rendering departs from the sampled text.
    """

    ids: list[int]
    start: PromptStart
    reason: str | None = None


class ChatRenderer:
    """Renders a conversation with a tokenizer's chat template, as text or as prompt token ids.

    The deployment rendering of a conversation is the template applied to the messages an
    OpenAI-style client would send (``deployment_dicts``). ``next_prompt`` keeps the model's own
    sampled ids and appends exactly the text the template renders after them, when the
    deployment rendering starts with the sampled history; otherwise the template rewrote
    history (reasoning stripped after a new user turn, a call re-rendered) and
    ``history_rewrite`` decides, every time, never silently.

    Args:
        tokenizer: A Hugging Face tokenizer that has a chat template.
        end_ids: Ids that end an assistant turn (default: the tokenizer's eos id).
        chat_template_kwargs: Extra template variables (``enable_thinking``, ``thinking``,
            ``reasoning_effort``...), passed to every render.
        history_rewrite: ``"new_row"`` or ``"keep_row"`` (see ``HistoryRewrite``).
    """

    def __init__(
        self, tokenizer: ChatTokenizer, end_ids: Iterable[int] | None = None, *,
        chat_template_kwargs: dict[str, Any] | None = None, history_rewrite: HistoryRewrite = "new_row",
    ):
        if history_rewrite not in ("new_row", "keep_row"):
            raise ConfigError(f"history_rewrite must be 'new_row' or 'keep_row', got {history_rewrite!r}")
        self.tokenizer = tokenizer
        eos = getattr(tokenizer, "eos_token_id", None)
        self.end_ids = set(end_ids) if end_ids is not None else ({int(eos)} if isinstance(eos, int) else set())
        self.chat_template_kwargs = check_template_kwargs(chat_template_kwargs)
        self.history_rewrite: HistoryRewrite = history_rewrite
        self.rewrites = 0
        """Turns whose deployment rendering did not extend the sampled history (a diagnostic)."""
        self._profile: TemplateProfile | None = None

    @property
    def profile(self) -> TemplateProfile:
        """The message shape the template accepts (probed on first use; ``TemplateError`` if none)."""
        if self._profile is None:
            self._profile = probe_template(self.tokenizer, self.chat_template_kwargs)
        return self._profile

    def text(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), *, generation_prompt: bool = True) -> str:
        """The deployment rendering, ending with the opening of the next assistant turn."""
        return self.tokenizer.apply_chat_template(
            deployment_dicts(messages, self.profile), tools=tool_dicts(tools) or None,
            add_generation_prompt=generation_prompt, tokenize=False, **self.chat_template_kwargs,
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
        """The next prompt's ids (``next_prompt(...).ids``)."""
        return self.next_prompt(messages, tools, prefix_ids=prefix_ids, prefix_messages=prefix_messages).ids

    def next_prompt(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), *,
        prefix_ids: Sequence[int] | None = None, prefix_messages: int = 0,
    ) -> RenderedPrompt:
        """The next prompt: the previous ids plus the template's text after them, or a stated row start.

        Args:
            messages: The whole conversation.
            tools: Tool specs.
            prefix_ids: The previous turn's prompt ids followed by its sampled ids.
            prefix_messages: How many leading ``messages`` the prefix covers.

        The deployment text is compared with the decoded prefix as text, so a sampled id
        sequence that is not the canonical tokenization of its text still extends.
        """
        deployed = self.text(messages, tools)
        if not prefix_ids or not 0 < prefix_messages < len(messages):
            return RenderedPrompt(self._encode(deployed), "full")
        sampled = self._decode(prefix_ids)
        if deployed.startswith(sampled):
            return RenderedPrompt([*prefix_ids, *self._encode(deployed[len(sampled) :])], "extend")
        self.rewrites += 1
        reason = describe_divergence(sampled, deployed)
        if self.history_rewrite == "keep_row":
            tail = self._kept_tail(messages, tools, prefix_messages, deployed, prefix_ids[-1])
            if tail is not None:
                return RenderedPrompt([*prefix_ids, *self._encode(tail)], "keep_row", reason)
            reason += "; the new messages could not be located in the rendering, so the deployment prompt is used"
        return RenderedPrompt(self._encode(deployed), "new_row", reason)

    def _kept_tail(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], start: int, deployed: str, last_sampled: int,
    ) -> str | None:
        """The template's text after the last sampled assistant turn, taken from ``deployed``.

        The first new message's content is located with a marker; the tail starts right after
        the end-of-turn token closing the assistant turn before it (GLM's closing is the next
        header itself, so the tail then starts after that header, which the model sampled).
        """
        first = messages[start]
        if not getattr(first, "content", ""):
            return None
        marked = [*messages[:start], first.model_copy(update={"content": _MARK + first.content}), *messages[start + 1 :]]
        at = self.text(marked, tools).find(_MARK)
        if at < 0:
            return None
        ends = [self._decode([last_sampled])] if last_sampled in self.end_ids else []
        ends += [self._decode([i]) for i in sorted(self.end_ids)]
        for end in ends:
            cut = deployed.rfind(end, 0, at)
            if cut >= 0:
                return deployed[cut + len(end) :] if last_sampled in self.end_ids else deployed[cut:]
        return None

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


_MARK = "\u2062toolgym-new-message\u2062"
"""Put in front of the first new message's content to find where it lands in a rendering."""


def describe_divergence(sampled: str, deployed: str, width: int = 40) -> str:
    """Where the deployment rendering first departs from the sampled text, with both sides shown."""
    at = next((i for i, (a, b) in enumerate(zip(sampled, deployed, strict=False)) if a != b), min(len(sampled), len(deployed)))
    lo = max(0, at - width // 2)
    return (
        f"the deployment rendering departs from the sampled history at character {at}: "
        f"sampled {sampled[lo : at + width]!r}, deployed {deployed[lo : at + width]!r}"
    )


_RESERVED = frozenset({"conversation", "messages", "tools", "documents", "add_generation_prompt", "tokenize", "return_dict", "continue_final_message", "chat_template"})


def check_template_kwargs(kwargs: Any, field: str = "chat_template_kwargs") -> dict[str, Any]:
    """Validated chat-template arguments (``enable_thinking``, ``thinking``, ``reasoning_effort``...).

    Raises:
        ConfigError: Not a mapping of names to values, or a name toolgym sets itself.
    """
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        raise ConfigError(f"{field} must map template variable names to values, e.g. {{'enable_thinking': false}}; got {kwargs!r:.200}")
    taken = sorted(_RESERVED & set(kwargs))
    if taken:
        raise ConfigError(f"{field} cannot set {', '.join(taken)}: toolgym passes those itself; keep only template variables")
    return dict(kwargs)
