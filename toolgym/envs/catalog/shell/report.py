"""What a shell episode achieved, measured in its sandbox after the episode.

``ShellOutcome.as_metadata()`` has the shape of ``toolgym.rubrics.checks.shell.ShellReport``,
the contract the ``files_as_expected`` and ``tests_pass`` checks read from
``episode.metadata["shell"]`` (built here from plain data: ``envs`` does not import ``rubrics``):

* ``files``: the final text of every file in ``task.metadata["expected_files"]`` (None when
  missing);
* ``tests``: the outcome of ``task.metadata["check"]``, run by ``Sandbox.run_isolated``
  (outside the model's session: nothing the model defined there, such as a function
  shadowing ``python3``, exists; on bwrap in a second sandbox holding a copy of the
  workspace); unittest and pytest summaries are counted, other commands count by exit status;
* the hidden ``task.metadata["probe"]``, when the task has one, counts as one more test: its
  command's last stdout line must hold the expected JSON value (compared here, on the host).

Git reads configuration from the workspace (``.git/config``): the checks run with hooks and
fsmonitor commands switched off, so a repository cannot run code of the model's during a check.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from toolgym.envs.shell.sandbox import Sandbox
from toolgym.envs.types import Task

CHECK_TIMEOUT_S = 60.0
"""Wall-clock limit of a task's check command."""
GIT_SAFE = (
    "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null "
    "GIT_CONFIG_PARAMETERS=\"'core.fsmonitor'='false' 'core.hooksPath'='/dev/null'\""
)
"""Prefix of every check: git ignores system/global config, the repo's hooks and fsmonitor command."""
MAX_FILE_BYTES = 1 << 20
"""Expected files are read up to this size (a bigger one cannot match an expected text anyway)."""

_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_FAILED = re.compile(r"^FAILED \(([^)]*)\)", re.MULTILINE)
_PYTEST = re.compile(r"(\d+) (passed|failed|errors?)\b")


@dataclass
class CheckRun:
    """Outcome of a task's check command (the fields of ``TestReport``)."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    exit_code: int | None = None

    def ok(self) -> bool:
        """Every counted test passed, or, with none counted, the command exited 0."""
        total = self.passed + self.failed + self.errors
        return self.passed == total if total else self.exit_code == 0


@dataclass
class ShellOutcome:
    """The measured end of an episode: expected files' text and the check's run."""

    files: dict[str, str | None] | None = None
    tests: CheckRun | None = None

    def as_metadata(self) -> dict[str, Any]:
        """``episode.metadata["shell"]`` (validated by ``ShellReport`` on the rubric side)."""
        return {"files": self.files, "tests": asdict(self.tests) if self.tests is not None else None}


def summary_counts(output: str) -> dict[str, int]:
    """Passed/failed/errors from a unittest ("Ran 3 tests ... FAILED (failures=1)") or pytest summary.

    >>> summary_counts("Ran 3 tests in 0.001s\\n\\nFAILED (failures=1, errors=1)")
    {'passed': 1, 'failed': 1, 'errors': 1}
    >>> summary_counts("==== 2 passed, 1 failed in 0.1s ====")
    {'passed': 2, 'failed': 1, 'errors': 0}
    """
    counts = {"passed": 0, "failed": 0, "errors": 0}
    ran = _RAN.search(output)
    if ran is None:
        for number, word in _PYTEST.findall(output):
            counts["errors" if word.startswith("error") else word] += int(number)
        return counts
    summary = _FAILED.search(output)
    if summary is not None:
        for part in summary.group(1).split(","):
            key, _, value = part.strip().partition("=")
            if key in ("failures", "errors"):
                counts["failed" if key == "failures" else "errors"] = int(value)
    counts["passed"] = max(0, int(ran.group(1)) - counts["failed"] - counts["errors"])
    return counts


async def read_expected(sandbox: Sandbox, paths: list[str]) -> dict[str, str | None]:
    """Final text of each path (None when it does not exist or is not a readable regular file:
    a FIFO, a socket or a link out of the workspace is a wrong file, never a crash)."""
    read = await sandbox.read_files(paths, max_bytes=MAX_FILE_BYTES)  # one harness exec on docker
    return {path: text if isinstance(text, str) else None for path, text in read.items()}


async def run_check(sandbox: Sandbox, check: str) -> CheckRun:
    """Run a task's check command outside the model's session; count what it reports."""
    result = await sandbox.run_isolated(f"{GIT_SAFE}; ( {check} )", timeout_s=CHECK_TIMEOUT_S)
    return CheckRun(exit_code=result.exit_code, **summary_counts(f"{result.stdout}\n{result.stderr}"))


async def run_probe(sandbox: Sandbox, probe: dict[str, Any]) -> bool:
    """Whether the hidden probe's last stdout line holds the expected JSON value."""
    result = await sandbox.run_isolated(f"{GIT_SAFE}; ( {probe['command']} )", timeout_s=CHECK_TIMEOUT_S)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        return result.exit_code == 0 and bool(lines) and json.loads(lines[-1]) == probe["expect"]
    except ValueError:
        return False


async def measure(sandbox: Sandbox, task: Task) -> ShellOutcome:
    """The ``ShellOutcome`` of the sandbox's workspace for ``task``."""
    expected: dict[str, Any] = task.metadata.get("expected_files") or {}
    check, probe = task.metadata.get("check"), task.metadata.get("probe")
    files = await read_expected(sandbox, sorted(expected)) if expected else None
    tests = await run_check(sandbox, check) if check else None
    if tests is not None and probe is not None:
        hidden_ok = await run_probe(sandbox, probe)
        tests.passed, tests.failed = tests.passed + hidden_ok, tests.failed + (not hidden_ok)
    return ShellOutcome(files=files, tests=tests)


def outcome_passes(task: Task, outcome: ShellOutcome, final_answer: str) -> bool:
    """Whether the outcome and the final answer meet everything ``task`` expects.

    Expected files are exact texts or None ("must not exist"), as the catalog writes them.
    """
    expected: dict[str, Any] = task.metadata.get("expected_files") or {}
    files = outcome.files or {}
    if any(files.get(path) != want for path, want in expected.items()):
        return False
    if task.metadata.get("check") and (outcome.tests is None or not outcome.tests.ok()):
        return False
    return all(out in final_answer for out in task.expected.outputs)
