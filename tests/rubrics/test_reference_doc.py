"""docs/rubric_reference.md is generated from the code; it must match what the code generates now."""

from __future__ import annotations

from pathlib import Path

from toolgym.rubrics.checks.registry import BUILTIN_CHECKS, CHECKS
from toolgym.rubrics.reference import render_reference

DOC = Path(__file__).parents[2] / "docs" / "rubric_reference.md"


def test_reference_page_is_up_to_date():
    assert DOC.read_text() == render_reference(), "regenerate: python -m toolgym.rubrics.reference > docs/rubric_reference.md"


def test_every_check_and_param_is_on_the_page():
    page = render_reference()
    for name in BUILTIN_CHECKS:  # checks registered by users (or other tests) are not on the page
        fn = CHECKS[name]
        assert f"### `{name}`" in page
        for param in fn.__kwdefaults__ or {}:
            assert f"| `{param}` |" in page, (name, param)


def test_the_custom_check_example_is_on_the_page():
    page = render_reference()
    assert "## Custom checks" in page and "@toolgym.register_check" in page
