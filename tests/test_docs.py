"""The README and every page under docs/: each Python block runs, and every doc is linked.

A page's ``python`` blocks run in order in one fresh interpreter (like a notebook), in a
temporary directory. A block that is a fragment (a class body shown out of context, a call to a
server that is not running) is preceded by ``<!-- not run: why -->`` and is skipped; the reason
is required so that a reader of the source knows why.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<marker><!-- not run: [^>]+ -->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def runnable_blocks(text: str) -> list[str]:
    """The Python blocks of a page that are meant to run, in order."""
    return [m["code"] for m in BLOCK.finditer(text) if not m["marker"]]


def test_the_block_reader_skips_only_marked_fragments():
    page = "```python\na = 1\n```\n<!-- not run: a fragment -->\n```python\nclass X:\n```\n```python\nb = a\n```\n"
    assert runnable_blocks(page) == ["a = 1\n", "b = a\n"]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable_blocks(p.read_text())], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path):
    script = "\n".join(runnable_blocks(page.read_text()))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}: {result.stderr[-3000:]}"


def test_every_doc_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert unlinked == [], f"link these pages from README.md: {unlinked}"


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 220, f"README.md has {lines} lines; move detail to a page under docs/"


def test_readme_links_point_at_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    missing = [link for link in re.findall(r"\]\((docs/[^)#]+)", readme) if not (ROOT / link).exists()]
    assert missing == [], f"README.md links to missing pages: {missing}"
