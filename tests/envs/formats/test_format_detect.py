"""tool_format="auto": the format a chat template teaches, and the errors when none is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolgym.envs.formats import FORMATS, chat_template_of, detect_format, get_format, resolve_format
from toolgym.errors import ConfigError

# Fragments written for these tests: each holds what its family's template renders around a
# call (enough for detection), not the family's template text.
OWN = {
    "hermes": "{%- for m in messages %}{{ '<tool_call>\\n' + m.tool_calls[0] | tojson + '\\n</tool_call>' }}<tool_response>{% endfor %}",
    "qwen3_coder": "{{ '<tool_call>\\n<function=' + tc.name + '>\\n' }}{{ '<parameter=' + k + '>\\n' }}{{ '</parameter>' }}",
    "glm45": "{{ '<tool_call>' + tc.name }}<arg_key>{{ k }}</arg_key><arg_value>{{ v }}</arg_value></tool_call><|observation|>",
    "kimi_k2": "<|im_assistant|>{{ '<|tool_calls_section_begin|>' }}<|tool_call_begin|>{{ tc.id }}<|tool_call_argument_begin|>",
    "deepseek": "{{ '<｜Assistant｜>' }}{{ '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tc.name + '<｜tool▁sep｜>' }}",
    "llama3_json": "<|start_header_id|>assistant<|end_header_id|>{{ '{\"name\": \"' + tc.name + '\", \"parameters\": ' }}<|eot_id|>",
    "harmony": "<|start|>assistant<|channel|>commentary to=functions.{{ tc.name }} <|constrain|>json<|message|>{{ args }}<|call|>",
    "mistral": "{{ '[TOOL_CALLS]' + tc.name + '[ARGS]' + args }}{{ '[TOOL_RESULTS]' }}",
}


@pytest.mark.parametrize("expected,template", sorted(OWN.items()))
def test_each_family_is_detected(expected, template):
    assert detect_format(template) == expected
    assert expected in FORMATS


def test_markers_named_only_by_special_tokens_are_seen():
    assert detect_format("{{ bos_token }}{{ tool_open }}", special_tokens=["<|tool_calls_section_begin|>"]) == "kimi_k2"


CORPUS = Path(__file__).parents[2] / "policies" / "templates"
EXPECTED = {
    "deepseek_v31": "deepseek", "glm45": "glm45", "gpt_oss": "harmony", "hermes3": "hermes", "kimi_k2": "kimi_k2",
    "kimi_k2_thinking": "kimi_k2", "llama31": "llama3_json", "mistral": "mistral", "qwen25": "hermes", "qwen3": "hermes",
    "qwen3_coder": "qwen3_coder",
}


@pytest.mark.parametrize("path", sorted(p for p in CORPUS.glob("*.jinja") if p.stem in EXPECTED), ids=lambda p: p.stem)
def test_the_test_template_corpus_is_detected(path):
    assert detect_format(path.read_text(encoding="utf-8")) == EXPECTED[path.stem]


def test_a_template_without_tool_calls_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="found no known tool-call format.*Name the format instead"):
        detect_format("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    with pytest.raises(ConfigError, match="must be the template's text"):
        detect_format(None)  # type: ignore[arg-type]


def test_resolve_and_get_format_on_auto():
    assert resolve_format("hermes") == "hermes"
    assert resolve_format("auto", OWN["glm45"]) == "glm45"
    with pytest.raises(ConfigError, match="none was given"):
        resolve_format("auto")
    with pytest.raises(ConfigError, match="resolve_format"):
        get_format("auto")


def test_chat_template_of_a_model_folder(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "default", "template": "plain"}, {"name": "tool_use", "template": OWN["mistral"]}]}))
    assert detect_format(chat_template_of(tmp_path)) == "mistral"
    (tmp_path / "chat_template.jinja").write_text(OWN["deepseek"])
    assert detect_format(chat_template_of(tmp_path)) == "deepseek"
    with pytest.raises(ConfigError, match="no chat_template.jinja"):
        chat_template_of(tmp_path / "missing")


def test_every_name_makes_an_env():
    import toolgym

    for name in FORMATS:
        env = toolgym.make("toolgym/unitconv-v0", tool_format=name)
        assert env.unwrapped.format.name == name
        env.close()
    with pytest.raises(ConfigError, match="Did you mean 'glm45'"):
        toolgym.make("toolgym/unitconv-v0", tool_format="glm4")
