"""What a shell episode achieved, measured in its sandbox after the episode.

The result is a ``ShellReport`` (``toolgym.rubrics.checks.shell``), the contract the
``files_as_expected`` and ``tests_pass`` checks read from ``episode.metadata["shell"]``:

* ``files``: the final text of every file in ``task.metadata["expected_files"]`` (None when
  missing);
* ``tests``: the outcome of ``task.metadata["check"]``, run in a fresh shell (so nothing the
  model defined in its session, such as a function shadowing ``python3``, can fake it);
  unittest and pytest summaries are counted, other commands count by exit status.
"""

from __future__ import annotations

import re
from typing import Any

from toolgym.envs.shell.sandbox import PathOutsideWorkspace, Sandbox
from toolgym.envs.types import Task
from toolgym.rubrics.checks.shell import ShellReport, TestReport, report_from_output

CHECK_TIMEOUT_S = 60.0
"""Wall-clock limit of a task's check command."""
MAX_FILE_BYTES = 1 << 20
"""Expected files are read up to this size (a bigger one cannot match an expected text anyway)."""

_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_FAILED = re.compile(r"^FAILED \(([^)]*)\)", re.MULTILINE)


def unittest_counts(output: str) -> dict[str, int] | None:
    """Passed/failed/errors from a unittest summary ("Ran 3 tests ... FAILED (failures=1)"), or None.

    >>> unittest_counts("Ran 3 tests in 0.001s\\n\\nFAILED (failures=1, errors=1)")
    {'passed': 1, 'failed': 1, 'errors': 1}
    """
    ran = _RAN.search(output)
    if ran is None:
        return None
    failed = errors = 0
    summary = _FAILED.search(output)
    if summary is not None:
        for part in summary.group(1).split(","):
            key, _, value = part.strip().partition("=")
            if key == "failures":
                failed = int(value)
            elif key == "errors":
                errors = int(value)
    total = int(ran.group(1))
    return {"passed": max(0, total - failed - errors), "failed": failed, "errors": errors}


async def read_expected(sandbox: Sandbox, paths: list[str]) -> dict[str, str | None]:
    """Final text of each path (None when it does not exist or is not a readable file)."""
    out: dict[str, str | None] = {}
    for path in paths:
        try:
            out[path] = await sandbox.read_file(path, max_bytes=MAX_FILE_BYTES)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PathOutsideWorkspace):
            out[path] = None
    return out


async def run_check(sandbox: Sandbox, check: str) -> TestReport:
    """Run a task's check command in a fresh shell at the workspace; count what it reports."""
    await sandbox.reset_session()
    result = await sandbox.run(f"( {check} )", timeout_s=CHECK_TIMEOUT_S)
    text = f"{result.stdout}\n{result.stderr}"
    counts = unittest_counts(text)
    if counts is None:
        counted = report_from_output(text)
        counts = {"passed": counted.passed, "failed": counted.failed, "errors": counted.errors}
    return TestReport(exit_code=result.exit_code, **counts)


async def measure(sandbox: Sandbox, task: Task) -> ShellReport:
    """The ``ShellReport`` of the sandbox's workspace for ``task``."""
    expected: dict[str, Any] = task.metadata.get("expected_files") or {}
    check = task.metadata.get("check")
    files = await read_expected(sandbox, sorted(expected)) if expected else None
    tests = await run_check(sandbox, check) if check else None
    return ShellReport(files=files, tests=tests)
