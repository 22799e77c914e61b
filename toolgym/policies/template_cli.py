"""``toolgym check-template MODEL_DIR`` and the template preflight of ``rollout --policy hf`` and ``train``.

The preflight runs ``check_template`` before any work and refuses, with the reason and the fix,
a template whose prompts would silently differ from deployment or whose calls the env would not
read. History rewrites pass: they are stated (the run's ``history_rewrite``) and counted.
"""

from __future__ import annotations

import json
import os
from typing import Any

from toolgym.errors import ConfigError
from toolgym.policies.chat import HistoryRewrite, check_template_kwargs
from toolgym.policies.template_check import TemplateReport, check_template, check_template_dir
from toolgym.policies.template_probe import TemplateError


def _refuse(report: TemplateReport, where: str) -> None:
    if not report.ok:
        raise TemplateError(
            f"{where}: the chat template would make training prompts differ from what the model sees in "
            f"deployment, or its calls would not be read:\n{report.summary()}\n"
            "Fix: pass the format the template writes (--format NAME or env.tool_format), or a template "
            "that renders tool calls and results; `toolgym check-template MODEL_DIR` shows the details."
        )


def preflight_template(
    tokenizer: Any, *, where: str, end_ids: Any = None, tool_format: str = "auto",
    chat_template_kwargs: dict[str, Any] | None = None, history_rewrite: HistoryRewrite = "new_row",
) -> TemplateReport:
    """``check_template`` on a loaded tokenizer; raises ``TemplateError`` (reason and fix) unless ok."""
    report = check_template(
        tokenizer, end_ids=end_ids, tool_format=tool_format, chat_template_kwargs=chat_template_kwargs,
        history_rewrite=history_rewrite,
    )
    _refuse(report, where)
    return report


def preflight_template_dir(
    model_dir: str | os.PathLike[str], *, tool_format: str = "auto", chat_template_kwargs: dict[str, Any] | None = None,
    history_rewrite: HistoryRewrite = "new_row",
) -> TemplateReport:
    """``check_template_dir`` on a model folder; raises ``TemplateError`` (reason and fix) unless ok."""
    report = check_template_dir(
        model_dir, tool_format=tool_format, chat_template_kwargs=chat_template_kwargs, history_rewrite=history_rewrite,
    )
    _refuse(report, f"model {str(model_dir)!r}")
    return report


def parse_template_kwargs(text: str | None) -> dict[str, Any]:
    """``--template-kwargs '{"enable_thinking": false}'`` as a dict, refused by name when it is not one."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--template-kwargs must be a JSON object, e.g. '{{\"enable_thinking\": false}}' ({exc})") from None
    return check_template_kwargs(value, "--template-kwargs")


def check_template_command(
    model_dir: str, *, tool_format: str = "auto", template_kwargs: str | None = None,
    history_rewrite: HistoryRewrite = "new_row", print_line: Any = print,
) -> bool:
    """Print the turn-by-turn report for ``model_dir``; True when the template passes the preflight."""
    report = check_template_dir(
        model_dir, tool_format=tool_format, chat_template_kwargs=parse_template_kwargs(template_kwargs),
        history_rewrite=history_rewrite,
    )
    for line in report.summary().splitlines():
        print_line(line)
    return report.ok
