"""The rubric reference page, generated from the code so it cannot drift.

``python -m toolgym.rubrics.reference > docs/rubric_reference.md`` rewrites the page; a test
fails when the committed page differs from what the code generates. The page lists every field
of the rubric file format (from the pydantic models and their attribute docstrings) and every
named check with its parameters, types, defaults and docstring.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from toolgym.rubrics.checks.registry import BUILTIN_CHECKS, CHECKS, params_model
from toolgym.rubrics.rubric import CheckSource, Criterion, CriticSource, Penalty, Rubric, Scale

CUSTOM_CHECKS = '''
## Custom checks

A check of your own is a plain function whose name is its metric name. `toolgym.register_check`
adds it to the checks above, so rubric files refer to it by name (an unknown name is refused
when the file loads, with the closest names); its keyword-only params are validated from their
type hints. In Python, a rubric's `criteria` also takes the function itself (weight 1), and
`Criterion.from_check` sets a weight, a gate or params. The function returns a number in
[0, 1] or a bool, or None when it does not apply to the task. An exception inside it makes the
criterion unscorable (`check_error`), never 0; raise `CheckUnscorable` when the episode lacks
what the check needs (`missing_data`).

```python
import toolgym
import yaml
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks
from toolgym.rubrics import Criterion, Rubric, rubric_from_dict, score_episodes_sync


@toolgym.register_check
def answer_is_short(task, episode, *, limit: int = 200) -> float:
    """1.0 when the final answer has at most ``limit`` characters."""
    return float(len(episode.final_answer) <= limit)


def mentions_a_number(task, episode) -> bool:
    """The final answer holds a digit."""
    return any(ch.isdigit() for ch in episode.final_answer)


rubric = Rubric(name="mine", criteria=[mentions_a_number, Criterion.from_check(answer_is_short, weight=0.5, params={"limit": 100})])
same = rubric_from_dict(yaml.safe_load("""
name: mine
criteria:
  - {id: mentions_a_number, description: The final answer holds a digit., source: {type: check, check: mentions_a_number}}
  - id: answer_is_short
    description: The final answer is short.
    weight: 0.5
    source: {type: check, check: answer_is_short, params: {limit: 100}}
"""))
tasks = sample_tasks("toolgym/unitconv-v0", n=2, seed=0)
episodes = run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)
scores = score_episodes_sync(episodes, rubric)
assert [s.total for s in scores] == [s.total for s in score_episodes_sync(episodes, same)]
print([s.total for s in scores], scores[0].criterion("answer_is_short").value)
```
'''
"""The section on registering checks of one's own, with an example the docs test runs."""

MODELS: list[type[BaseModel]] = [Rubric, Criterion, CheckSource, CriticSource, Scale, Penalty]
"""The rubric file's models, outermost first."""


def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """The docstring written under each field of ``model`` (first paragraph), by field name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]  # the parsed source is one class definition
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split("\n\n")[0].split())
    return docs


def _type_name(tp: Any) -> str:
    text = str(tp) if typing.get_origin(tp) or not isinstance(tp, type) else tp.__name__
    for prefix in ("typing.", "toolgym.rubrics.rubric.", "toolgym.rubrics.checks.base.", "toolgym.rubrics.matchers.", "toolgym.rubrics.checks.calls."):
        text = text.replace(prefix, "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return f"`{field.default!r}`"
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    return "required"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _model_section(model: type[BaseModel]) -> list[str]:
    docs = attribute_docs(model)
    summary = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0]
    lines = [f"### `{model.__name__}`", "", _cell(summary), "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default(field)} | {_cell(docs.get(name, ''))} |")
    return [*lines, ""]


def _param_docs(fn: Any) -> dict[str, str]:
    """Google-style ``Args:`` entries of ``fn``'s docstring, by name."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    if "Args:" not in doc:
        return {}
    block = doc.split("Args:", 1)[1]
    out: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line and not line.startswith(" "):
            break  # the next section (Returns:, Raises:, ...)
        stripped = line.strip()
        head, sep, rest = stripped.partition(":")
        if sep and line.startswith("    ") and not line.startswith("     ") and head.replace("_", "").isalnum():
            current = head
            out[current] = rest.strip()
        elif current and stripped:
            out[current] += " " + stripped
    return out


def _check_section(name: str) -> list[str]:
    fn = CHECKS[name]
    summary = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0]
    params = params_model(name).model_fields
    pdocs = _param_docs(fn)
    lines = [f"### `{name}`", "", _cell(summary), ""]
    if not params:
        return [*lines, "No params.", ""]
    lines += ["| param | type | default | meaning |", "|---|---|---|---|"]
    for pname, field in params.items():
        lines.append(f"| `{pname}` | `{_type_name(field.annotation)}` | {_default(field)} | {_cell(pdocs.get(pname, ''))} |")
    return [*lines, ""]


def render_reference() -> str:
    """The whole reference page as Markdown."""
    lines = [
        "# Rubric reference",
        "",
        "Generated from the code by `python -m toolgym.rubrics.reference > docs/rubric_reference.md`;",
        "a test fails when this page and the code disagree. Rubric files are YAML or JSON",
        "(`toolgym.rubrics.load_rubric`); the shipped ones are in `toolgym/rubrics/catalog/`.",
        "",
        "## File format",
        "",
    ]
    for model in MODELS:
        lines += _model_section(model)
    lines += [
        "## Checks",
        "",
        "A criterion with `source: {type: check, check: NAME, params: {...}}` runs the check `NAME`.",
        "Every check returns a number in [0, 1], or nothing when it does not apply to the episode.",
        "",
    ]
    for name in sorted(BUILTIN_CHECKS):
        lines += _check_section(name)
    lines += CUSTOM_CHECKS.strip("\n").splitlines()
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
