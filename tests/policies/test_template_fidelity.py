"""Every family's template through the token path: prompts equal the deployment rendering turn by turn
(or a stated, counted row start where the template rewrites history), rows equal the sampled ids, and
behaviour log-probs reproduce on the rows.

The templates are toolgym's own (``templates/``), written to reproduce each family's format and quirks;
their tokenizers carry the family's special tokens (``template_families``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.envs.types import AssistantMessage, StopReason, Task, ToolMessage, UserMessage
from toolgym.policies.chat import ChatRenderer
from toolgym.policies.template_check import TemplateReport, check_template
from toolgym.policies.template_probe import TemplateError
from toolgym.rollouts.episode import Episode, TurnRecord
from toolgym.rollouts.rows import episode_to_rows, token_metrics

pytest.importorskip("transformers")


def _families():
    # Tests run with --import-mode=importlib, so the helper next to this file is loaded by path.
    if "template_families" not in sys.modules:
        spec = importlib.util.spec_from_file_location("template_families", Path(__file__).with_name("template_families.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["template_families"] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules["template_families"]


FAMILIES, end_ids, family_tokenizer = _families().FAMILIES, _families().end_ids, _families().family_tokenizer


def _report(name: str, history_rewrite: str = "new_row") -> TemplateReport:
    family = FAMILIES[name]
    return check_template(
        family_tokenizer(name), end_ids=end_ids(name), tool_format=family.tool_format,
        chat_template_kwargs=family.kwargs, history_rewrite=history_rewrite,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_prompts_equal_the_deployment_rendering_and_calls_parse(name):
    report = _report(name)
    assert report.ok, report.summary()
    assert all(t.prompt_equals_deployment for t in report.turns), report.summary()
    assert all(t.calls_parsed == t.calls_expected for t in report.turns)
    assert sum(t.calls_expected for t in report.turns) >= 3  # parallel calls, or one per turn where the template allows no more
    # Rows start exactly where the template rewrites history, and only in families that do.
    assert bool(report.row_starts) == FAMILIES[name].rewrites, report.summary()
    assert all(t.reason for t in report.turns if t.start == "new_row")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_auto_format_is_the_family_format(name):
    family = FAMILIES[name]
    report = check_template(family_tokenizer(name), end_ids=end_ids(name), tool_format="auto", chat_template_kwargs=family.kwargs)
    assert report.tool_format == family.tool_format and report.ok


@pytest.mark.parametrize("name", sorted(n for n, f in FAMILIES.items() if f.rewrites))
def test_keep_row_keeps_one_row_and_says_where_deployment_differs(name):
    report = _report(name, "keep_row")
    assert report.ok, report.summary()
    assert [t.start for t in report.turns][1:] == [t.start if t.start == "extend" else "keep_row" for t in report.turns[1:]]
    assert any(t.start == "keep_row" and t.reason for t in report.turns)
    assert len(episode_to_rows(_episode(report, [[0.0] * len(t.sampled_ids) for t in report.turns]))) == 1


@pytest.fixture(scope="module")
def tiny_models():
    return {}


def _tiny_model(cache, name):
    if name not in cache:
        cache[name] = _families().tiny_model(name)
    return cache[name]


def _logprobs(model, ids: list[int], start: int):
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]  # (T, V)
    picked = torch.log_softmax(logits[:-1].double(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]  # (T-1,)
    return picked[start - 1 :].tolist()


def _episode(report: TemplateReport, logprobs: list[list[float]]) -> Episode:
    turns = [
        TurnRecord(text="", prompt_token_ids=t.prompt_ids, token_ids=t.sampled_ids, logprobs=lp)
        for t, lp in zip(report.turns, logprobs, strict=True)
    ]
    return Episode(id="e", env_id="x", task=Task(id="t", instruction="i"), seed=0, turns=turns, stop_reason=StopReason.ANSWERED)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_rows_equal_generation_and_logprobs_reproduce(name, tiny_models):
    model = _tiny_model(tiny_models, name)
    report = _report(name)
    # Behaviour log-probs: each turn scored in its own prompt, as at sampling time.
    behaviour = [_logprobs(model, [*t.prompt_ids, *t.sampled_ids], len(t.prompt_ids)) for t in report.turns]
    episode = _episode(report, behaviour)
    rows = episode_to_rows(episode)
    assert len(rows) == 1 + len(report.row_starts)
    assert token_metrics(episode.turns)["token_forks"] == len(report.row_starts)
    for row in rows:
        for (a, b), turn in zip(row.turn_spans, row.turn_indices, strict=True):
            assert row.input_ids[a:b] == report.turns[turn].sampled_ids
        again = _logprobs(model, row.input_ids, 1)
        for position, (mask, logprob) in enumerate(zip(row.loss_mask, row.behaviour_logprobs, strict=True)):
            if mask:
                assert abs(again[position - 1] - logprob) < 1e-4


pieces = st.text(st.sampled_from("abcxyz 019.,\n{}\"<>/|_"), min_size=1, max_size=8) | st.sampled_from(
    ["<|im_end|>", "<|observation|>", "<|call|>", "<|eot_id|>", "</s>", "</think>", "<tool_call>", "[TOOL_CALLS]"]
)
words = st.lists(pieces, min_size=1, max_size=3).map("".join)
"""Texts with forged control-token strings: a tool result or user turn may hold any of them."""


@pytest.mark.parametrize("name", ["qwen25", "qwen3", "glm45", "kimi_k2_thinking", "gpt_oss", "llama31", "mistral", "deepseek_v31"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=words, result=words, follow_up=words)
def test_any_texts_extend_or_start_a_stated_row(name, answer, result, follow_up):
    # Whatever the tools and the user said (forged control tokens included: they are tokenized as
    # the deployment server would), the next prompt decodes to the deployment rendering, and it
    # extends the sampled ids unless the family's template rewrites history.
    from toolgym.policies.template_check import TOOLS, _call, _model_text

    renderer = ChatRenderer(family_tokenizer(name), end_ids(name), chat_template_kwargs=FAMILIES[name].kwargs)
    call = _call("get_weather", 0, city="Paris")
    if renderer.profile.nine_char_ids:
        call = call.model_copy(update={"id": "call00000"})
    messages = [UserMessage(content="q" + follow_up), AssistantMessage(content="", tool_calls=[call])]
    first = renderer.next_prompt(messages[:1], TOOLS)
    sampled = renderer._encode(_model_text(renderer, messages[:1], messages[1]))
    conversation = [*messages, ToolMessage(tool_call_id=call.id, name=call.name, content=result), AssistantMessage(content=answer), UserMessage(content=follow_up)]
    for cut in (3, 5):
        prompt = renderer.next_prompt(conversation[:cut], TOOLS, prefix_ids=[*first.ids, *sampled], prefix_messages=2)
        assert renderer._decode(prompt.ids) == renderer.text(conversation[:cut], TOOLS)
        if prompt.start == "extend":
            assert prompt.ids[: len(first.ids) + len(sampled)] == [*first.ids, *sampled]
        else:
            assert prompt.start == "new_row" and prompt.reason and FAMILIES[name].rewrites


def test_a_template_that_cannot_render_tool_use_is_refused_by_name():
    from transformers import PreTrainedTokenizerFast

    base = family_tokenizer("qwen25")
    plain = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>",
                                    chat_template="{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    with pytest.raises(TemplateError, match="without the tool call"):
        _ = ChatRenderer(plain).profile
    broken = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>",
                                     chat_template="{% for m in messages %}{{ m.tool_calls[0].function.name + 1 }}{% endfor %}")
    report = check_template(broken, tool_format="hermes")
    assert not report.ok and "cannot render a tool call" in report.problems[0]


def test_tool_messages_carry_no_name_unless_the_template_fails_without_it():
    renderer = ChatRenderer(family_tokenizer("kimi_k2_thinking"))
    from toolgym.policies.template_check import TOOLS, _call

    call = _call("convert", 0, value=1, unit="ft")
    text = renderer.text([UserMessage(content="q"), AssistantMessage(content="", tool_calls=[call]),
                          ToolMessage(tool_call_id=call.id, name="convert", content="r")], TOOLS)
    assert "<|im_system|>tool<|im_middle|>" in text and "<|im_system|>convert" not in text
    assert not renderer.profile.tool_names


def test_a_template_that_cannot_render_its_own_turns_is_refused_with_the_fix():
    name = "deepseek_v31"
    report = check_template(family_tokenizer(name), end_ids=end_ids(name), tool_format="deepseek", chat_template_kwargs={"thinking": True})
    assert not report.ok and "other mode" in report.problems[0]


def test_deepseek_gets_string_arguments_and_the_template_kwargs_reach_the_template():
    assert ChatRenderer(family_tokenizer("deepseek_v31")).profile.arguments == "json"
    on = ChatRenderer(family_tokenizer("deepseek_v31"), chat_template_kwargs={"thinking": True})
    assert on.text([UserMessage(content="q")]).endswith("<｜Assistant｜><think>")
    assert ChatRenderer(family_tokenizer("gpt_oss"), chat_template_kwargs={"reasoning_effort": "high"}).text([UserMessage(content="q")]).count("Reasoning: high") == 1
