"""A small reader for Google-style docstrings: the summary and the ``Args:`` descriptions."""

from __future__ import annotations

import inspect
import re

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Example|Examples|Note|Notes):\s*$")
_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and per-argument descriptions.

    The description is everything before the first section header, paragraphs joined by a
    blank line. Argument descriptions may run over several indented lines.

    >>> parse_docstring('''Add two numbers.
    ...
    ... Args:
    ...     a: First term.
    ...     b (int): Second
    ...         term.
    ... ''')
    ('Add two numbers.', {'a': 'First term.', 'b': 'Second term.'})
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        header = _SECTION.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if header:
            section, current = header.group(1), None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters"):
            continue
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG.match(stripped)
        if match and (current is None or indent <= _arg_indent(lines, section)):
            current = match.group(1).lstrip("*")
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(summary).strip(), args


def _arg_indent(lines: list[str], section: str) -> int:
    """Indentation of the argument names in the given section (the first entry's)."""
    seen = False
    for line in lines:
        if line.strip().rstrip(":") == section:
            seen = True
            continue
        if seen and line.strip():
            return len(line) - len(line.lstrip())
    return 0
