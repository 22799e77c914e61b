"""``check_template``: is toolgym's token path faithful to a model's own chat template?

It renders a generated multi-turn tool-use conversation (a system prompt, a request answered
with parallel calls and their results, a final answer, a follow-up user turn, one more call,
reasoning where the template shows reasoning) with the template itself, and plays it through
``ChatRenderer`` the way a rollout does: the model's text on each assistant turn is what the
template renders for that turn (a model trained on its template writes exactly that), its ids
are sampled ids, and every next prompt is built from the previous prompt plus those ids.

Turn by turn the report says whether the prompt equals the deployment rendering, how it relates
to the previous turn (``extend``, or a row start where the template rewrites history, and why),
which tool-call format the model's calls are in and whether the env's format parses them.

Its verdict, ``ok``, is False when the prompts would *silently* differ from deployment or the
model's calls would not be read: a tokenizer that does not give back rendered text, calls the
env's format cannot parse, a format that cannot be told from the template. History rewrites are
not failures: they are stated and counted (``ChatRenderer.history_rewrite``).

>>> # report = check_template_dir("path/to/model"); print(report.summary())
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.envs.types import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, ToolSpec, UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.chat import ChatRenderer, HistoryRewrite, PromptStart
from toolgym.policies.template_probe import TemplateError, probe_template


@dataclass
class TurnCheck:
    """One assistant turn of the checked conversation."""

    index: int
    new_messages: list[str]
    """Roles of the messages since the previous assistant turn."""
    start: PromptStart
    prompt_equals_deployment: bool
    """The prompt's text equals the template's rendering of the conversation so far."""
    ids_equal_deployment: bool
    """The prompt's ids equal the canonical tokenization of that rendering (False is expected after
    a turn whose sampled ids are not canonical; the text is what matters)."""
    format_seen: str | None
    calls_expected: int
    calls_parsed: int
    parse_errors: list[str] = field(default_factory=list)
    reason: str | None = None
    prompt_ids: list[int] = field(default_factory=list, repr=False)
    """The prompt toolgym built for the turn."""
    sampled_ids: list[int] = field(default_factory=list, repr=False)
    """The model's ids for the turn (its template's text, tokenized)."""


@dataclass
class TemplateReport:
    """What ``check_template`` found."""

    tool_format: str | None
    history_rewrite: HistoryRewrite
    turns: list[TurnCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Why the template is refused (empty when ``ok``)."""
    notes: list[str] = field(default_factory=list)
    """What was adapted or is worth knowing (single calls only, reasoning not shown...)."""

    @property
    def ok(self) -> bool:
        """No prompt silently differs from deployment and every call parses."""
        return not self.problems

    @property
    def row_starts(self) -> list[int]:
        """Turns where a new row starts because the template rewrote history."""
        return [t.index for t in self.turns if t.start == "new_row"]

    def summary(self) -> str:
        """A few lines for a terminal: verdict, turn table, notes, problems and fixes."""
        lines = [f"format: {self.tool_format or 'unknown'}; history rewrites: {self.history_rewrite}"]
        for t in self.turns:
            lines.append(
                f"  turn {t.index}: after {'+'.join(t.new_messages) or 'start'}: {t.start}, "
                f"prompt {'==' if t.prompt_equals_deployment else '!='} deployment, "
                f"calls {t.calls_parsed}/{t.calls_expected} parsed ({t.format_seen or 'no calls'})"
                + (f"; {t.reason}" if t.reason else "")
            )
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines.append("verdict: " + ("faithful" if self.ok else "refused") + (f"; rows start at turns {self.row_starts}" if self.row_starts else ""))
        return "\n".join(lines)


TOOLS = [
    ToolSpec.model_validate({"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
    ToolSpec.model_validate({"type": "function", "function": {
        "name": "convert", "description": "Convert a length.",
        "parameters": {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
                       "required": ["value", "unit"]}}}),
]


def _call(name: str, index: int, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"functions.{name}:{index}", name=name, arguments=arguments)


def generated_conversation(parallel: bool = True, reasoning: bool = True, follow_ups: int = 1) -> list[Message]:
    """The checked conversation: parallel calls, results, an answer, then ``follow_ups`` times a
    user follow-up, a call, its result and an answer."""
    think = (lambda text: text) if reasoning else (lambda text: None)
    first = [_call("get_weather", 0, city="Paris"), _call("convert", 1, value=3, unit="ft")]
    turns: list[list[ToolCall]] = [first] if parallel else [first[:1], [_call("convert", 0, value=3, unit="ft")]]
    messages: list[Message] = [
        SystemMessage(content="You are a careful assistant."),
        UserMessage(content="Weather in Paris, and 3 m in feet?"),
    ]
    for calls in turns:
        messages.append(AssistantMessage(content="", tool_calls=calls, **_reasoning(think("I need both tools."))))
        messages += [ToolMessage(tool_call_id=c.id, name=c.name, content=f'{{"result": "{c.name} ok {i}"}}') for i, c in enumerate(calls)]
    messages.append(AssistantMessage(content="Paris is sunny; 3 m is 9.84 ft.", **_reasoning(think("Both results are in."))))
    for city in (["Rome", "Oslo", "Lima", "Kyiv", "Pune"] * (1 + follow_ups // 5))[:follow_ups]:
        messages.append(UserMessage(content=f"And in {city}?"))
        messages.append(AssistantMessage(content="", tool_calls=[_call("get_weather", 0, city=city)], **_reasoning(think("One more call."))))
        messages.append(ToolMessage(tool_call_id="functions.get_weather:0", name="get_weather", content='{"result": "rain"}'))
        messages.append(AssistantMessage(content=f"{city} has rain.", **_reasoning(think("Done."))))
    return messages


def _reasoning(text: str | None) -> dict[str, Any]:
    # AssistantMessage.reasoning exists once the formats split reasoning out; before, it is left out.
    return {"reasoning": text} if text and "reasoning" in AssistantMessage.model_fields else {}


def check_template(
    tokenizer: Any, *, end_ids: Sequence[int] | None = None, tool_format: str = "auto",
    chat_template_kwargs: dict[str, Any] | None = None, history_rewrite: HistoryRewrite = "new_row", follow_ups: int = 1,
) -> TemplateReport:
    """Play a generated tool-use conversation through the token path and compare with deployment.

    Args:
        tokenizer: A Hugging Face tokenizer with the model's chat template.
        end_ids: End-of-turn ids (default: the tokenizer's eos id).
        tool_format: The env's tool-call format, or ``"auto"`` to detect it from the template.
        chat_template_kwargs: Template variables used in deployment (``enable_thinking``...).
        history_rewrite: How the run treats rewritten history (``"new_row"`` or ``"keep_row"``).
        follow_ups: User follow-ups after the first answer (each: a call, its result, an answer).
    """
    report = TemplateReport(tool_format=None, history_rewrite=history_rewrite)
    kwargs = dict(chat_template_kwargs or {})
    try:
        profile = probe_template(tokenizer, kwargs)
    except TemplateError as exc:
        report.problems.append(str(exc))
        return report
    report.tool_format = _resolve_format(tool_format, tokenizer, report)
    renderer = ChatRenderer(tokenizer, end_ids, chat_template_kwargs=kwargs, history_rewrite=history_rewrite)
    parallel = _renders_parallel_calls(renderer, profile.nine_char_ids)
    if not parallel:
        report.notes.append("the template cannot render several calls in one assistant turn: the conversation uses one call per turn")
    reasoning = _shows_reasoning(renderer)
    if not reasoning:
        report.notes.append("the template shows no reasoning in assistant turns (or the message type has no reasoning field)")
    if profile.arguments == "json":
        report.notes.append("the template takes tool-call arguments as a JSON string; toolgym sends them so")
    if profile.tool_names:
        report.notes.append("the template needs a 'name' on tool messages; toolgym sends it")
    conversation = generated_conversation(parallel, reasoning, follow_ups)
    if profile.nine_char_ids:
        report.notes.append("the template accepts only 9-character alphanumeric call ids (the model writes them; toolgym keeps them)")
        conversation = _nine_char_ids(conversation)
    _play(renderer, conversation, report)
    return report


def _nine_char_ids(conversation: list[Message]) -> list[Message]:
    ids: dict[str, str] = {}
    short = lambda old: ids.setdefault(old, f"call{len(ids):05d}")  # noqa: E731
    out: list[Message] = []
    for m in conversation:
        if isinstance(m, AssistantMessage) and m.tool_calls:
            m = m.model_copy(update={"tool_calls": [c.model_copy(update={"id": short(c.id)}) for c in m.tool_calls]})
        elif isinstance(m, ToolMessage):
            m = m.model_copy(update={"tool_call_id": short(m.tool_call_id)})
        out.append(m)
    return out


def _resolve_format(tool_format: str, tokenizer: Any, report: TemplateReport) -> str | None:
    if tool_format != "auto":
        return tool_format
    from toolgym.envs.formats import detect_format

    try:
        return str(detect_format(tokenizer.chat_template))
    except ConfigError as exc:
        report.problems.append(f"cannot tell the tool-call format from the template: {exc}; pass --format NAME")
        return None


def _renders_parallel_calls(renderer: ChatRenderer, nine_char_ids: bool) -> bool:
    calls = [_call("get_weather", 0, city="Oslo"), _call("convert", 1, value=7, unit="yd")]
    messages: list[Message] = [UserMessage(content="q"), AssistantMessage(content="", tool_calls=calls)]
    messages += [ToolMessage(tool_call_id=c.id, name=c.name, content="r") for c in calls]
    messages = _nine_char_ids(messages) if nine_char_ids else messages
    try:
        text = renderer.text(messages, TOOLS)
    except Exception:  # the template refuses several calls (Llama 3.x raises)
        return False
    return "Oslo" in text and "yd" in text  # gpt-oss renders the first call only


def _shows_reasoning(renderer: ChatRenderer) -> bool:
    """Reasoning on a tool-call turn or an answer turn appears in the rendering (K2-Thinking empties
    it on the last answer but shows it on later calls)."""
    if "reasoning" not in AssistantMessage.model_fields:
        return False
    marker = "toolgym reasoning probe"
    call = [_call("get_weather", 0, city="Oslo")]
    for message in (AssistantMessage(content="a", **_reasoning(marker)), AssistantMessage(content="", tool_calls=call, **_reasoning(marker))):
        asked: list[Message] = [UserMessage(content="q")]
        try:
            closed = renderer.text([*asked, message], TOOLS, generation_prompt=False)
            # A generation prompt that closes reasoning itself (enable_thinking=false) means no reasoning is sampled.
            if marker in closed and closed.startswith(renderer.text(asked, TOOLS)):
                return True
        except Exception:  # a template that refuses this shape shows no reasoning in it
            continue
    return False


def _play(renderer: ChatRenderer, conversation: list[Message], report: TemplateReport) -> None:
    """Walk the assistant turns: build each prompt as a rollout does, compare, then 'sample' the turn."""
    fmt = _format(report.tool_format)
    prefix: list[int] | None = None
    covered = 0
    played: list[Message] = []
    for index, at in enumerate(i for i, m in enumerate(conversation) if isinstance(m, AssistantMessage)):
        new = conversation[covered:at] if prefix is not None else conversation[:at]
        played += new
        try:
            prompt = renderer.next_prompt(played, TOOLS, prefix_ids=prefix, prefix_messages=covered)
            deployed = renderer.text(played, TOOLS)
            text = _model_text(renderer, played, conversation[at])
        except Exception as exc:  # a template error on a real conversation: the run would fail here
            report.problems.append(f"turn {index}: the template fails: {type(exc).__name__}: {exc}"[:400])
            return
        target = conversation[at]
        assert isinstance(target, AssistantMessage)
        message, check = _parse_turn(fmt, text, target, index)
        check.new_messages = [m.role for m in new]
        check.start, check.reason = prompt.start, prompt.reason
        check.prompt_equals_deployment = prompt.start == "keep_row" or renderer._decode(prompt.ids) == deployed
        check.ids_equal_deployment = prompt.ids == renderer._encode(deployed)
        report.turns.append(check)
        if not check.prompt_equals_deployment:
            report.problems.append(
                f"turn {index}: the prompt does not decode to the deployment rendering although it is marked "
                f"{prompt.start!r}: the tokenizer does not give back the text it encodes (normalization, added spaces)"
            )
        if check.calls_parsed != check.calls_expected or check.parse_errors:
            report.problems.append(
                f"turn {index}: the env's format {report.tool_format!r} read {check.calls_parsed} of "
                f"{check.calls_expected} calls ({'; '.join(check.parse_errors) or 'no error'}); "
                f"the model writes {check.format_seen or 'no known format'}: pass --format {check.format_seen or 'NAME'}"
            )
        played.append(message)
        check.prompt_ids, check.sampled_ids = prompt.ids, renderer._encode(text)
        prefix = [*prompt.ids, *check.sampled_ids]
        covered = len(played)


def _format(name: str | None) -> Any:
    from toolgym.envs.formats import get_format

    return get_format(name) if name else None


def _model_text(renderer: ChatRenderer, played: list[Message], target: Message) -> str:
    """What a model trained on its template writes for ``target``: the template's own rendering of
    the turn after the generation prompt, ended by the end-of-turn token the template expects.

    Templates that render history differently once the turn exists (gpt-oss drops analysis before
    calls once a final answer follows; Hermes-3 closes a tool turn differently when it is not last)
    are read with earlier reasoning left out, then by the last generation header in the rendering.
    """
    for context in (played, [_without_reasoning(m) for m in played]):
        opened = renderer.text(context, TOOLS)
        closed = renderer.text([*context, target], TOOLS, generation_prompt=False)
        if closed.startswith(opened):
            return _ended(renderer, closed[len(opened) :], [*context, target], closed)
    base = renderer.text(played, TOOLS, generation_prompt=False)
    if not opened.startswith(base) or opened == base or (at := closed.rfind(opened[len(base) :])) < 0:
        raise ConfigError(
            "the template renders an assistant turn that does not continue its own generation prompt (DeepSeek-V3.1 "
            "with thinking=true opens <think> but renders history without it), so no prompt after it can equal "
            "deployment; use the template's other mode (chat-template arguments) or a template that renders reasoning"
        )
    return _ended(renderer, closed[at + len(opened) - len(base) :], [*played, target], closed)


def _without_reasoning(m: Message) -> Message:
    return m.model_copy(update={"reasoning": None}) if isinstance(m, AssistantMessage) and getattr(m, "reasoning", None) else m


def _ended(renderer: ChatRenderer, body: str, messages: list[Message], closed: str) -> str:
    """``body`` cut after its first end-of-turn token, or, where the template closes turns with the
    next header (GLM), followed by the end token that header is."""
    ends = sorted({renderer._decode([i]) for i in renderer.end_ids} - {""}, key=lambda e: body.find(e) if e in body else len(body))
    for end in ends:
        if end in body:
            return body[: body.index(end) + len(end)]
    after = renderer.text([*messages, UserMessage(content=".")], TOOLS)[len(closed) :]
    return body + next((e for e in ends if after.startswith(e)), "")


def _parse_turn(fmt: Any, text: str, target: AssistantMessage, index: int) -> tuple[AssistantMessage, TurnCheck]:
    """The env's reading of the model's text, and the parse part of the turn's check."""
    from toolgym.envs.formats.detect import format_seen

    check = TurnCheck(
        index=index, new_messages=[], start="full", prompt_equals_deployment=False, ids_equal_deployment=False,
        format_seen=format_seen(text, "") if target.tool_calls else None, calls_expected=len(target.tool_calls), calls_parsed=0,
    )
    if fmt is None:
        return target.model_copy(update={"raw": text}), check
    try:
        parsed = fmt.parse(text, tools=TOOLS)
    except TypeError:  # formats without the tools argument
        parsed = fmt.parse(text)
    check.calls_parsed = sum(
        1 for c, want in zip(parsed.tool_calls, target.tool_calls, strict=False) if c.name == want.name and c.arguments == want.arguments
    )
    check.parse_errors = [e.message for e in parsed.errors]
    # The env's message: parsed calls keep the template's ids, so results answer them.
    calls = [c.model_copy(update={"id": want.id}) for c, want in zip(parsed.tool_calls, target.tool_calls, strict=False)]
    update: dict[str, Any] = {"content": parsed.content, "tool_calls": calls or target.tool_calls, "raw": text}
    if "reasoning" in AssistantMessage.model_fields:
        update["reasoning"] = getattr(parsed, "reasoning", None)
    return target.model_copy(update=update), check


def check_template_dir(
    model_dir: str | os.PathLike[str], *, tool_format: str = "auto", chat_template_kwargs: dict[str, Any] | None = None,
    history_rewrite: HistoryRewrite = "new_row",
) -> TemplateReport:
    """``check_template`` on a model folder's tokenizer and end ids (no weights are loaded)."""
    from transformers import AutoTokenizer, GenerationConfig

    from toolgym.policies.hf_model import TOKENIZER_FILES, ModelDirError

    folder = Path(model_dir).expanduser()
    if not folder.is_dir() or not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelDirError(
            f"{str(folder)!r} is not a folder holding a tokenizer (expected one of {', '.join(TOKENIZER_FILES)}); "
            "check-template reads the tokenizer and its chat template only"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(f"the tokenizer in {str(folder)!r} has no chat template; add chat_template.jinja")
    end_ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    try:
        configured = GenerationConfig.from_pretrained(folder).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's eos only
        configured = None
    end_ids |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return check_template(
        tokenizer, end_ids=sorted(end_ids) or None, tool_format=tool_format, chat_template_kwargs=chat_template_kwargs,
        history_rewrite=history_rewrite,
    )

