"""Checks for shell and coding episodes: tests pass, files hold what they should.

They read a generic contract rather than one sandbox's internals, so any shell environment can
feed them:

* ``episode.metadata["shell"]``, validated by ``ShellReport``: what the environment measured
  after the episode (a test run it did itself, the final contents of files it watches);
* failing that, for tests, the last result of a command tool (``run``, ``exec``, ``shell``,
  ``bash``) whose command looks like a test run. Its output may be JSON with ``exit_code`` /
  ``returncode`` and ``stdout``, or plain text; pytest-style summaries are counted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.types import Task
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.checks.base import CheckUnscorable
from toolgym.rubrics.matchers import value_matches
from toolgym.rubrics.trajectory import call_records

_SUMMARY = re.compile(r"(\d+) (passed|failed|errors?)\b")
COMMAND_TOOLS = ("run", "exec", "shell", "bash")


class TestReport(BaseModel):
    """Outcome of one test run."""

    model_config = ConfigDict(extra="forbid")
    __test__ = False  # not a pytest class, despite the name

    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    exit_code: int | None = None

    def fraction(self) -> float:
        """Passed over run; the exit code decides when no test was counted."""
        total = self.passed + self.failed + self.errors
        if total:
            return self.passed / total
        return float(self.exit_code == 0)


class ShellReport(BaseModel):
    """What a shell environment reports in ``episode.metadata["shell"]``."""

    model_config = ConfigDict(extra="forbid")

    tests: TestReport | None = None
    files: dict[str, str | None] | None = None
    """Final contents of the watched files by path; None for a file that does not exist."""


def shell_report(episode: Episode) -> ShellReport | None:
    """``episode.metadata["shell"]`` validated, or None when the episode has none."""
    raw = episode.metadata.get("shell")
    return None if raw is None else ShellReport.model_validate(raw)


def report_from_output(content: str) -> TestReport:
    """Read a command tool's output: JSON with an exit code and stdout, or plain text."""
    exit_code: int | None = None
    text = content
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        code = data.get("exit_code", data.get("returncode"))
        exit_code = code if isinstance(code, int) else None
        text = f"{data.get('stdout', '')}\n{data.get('stderr', '')}"
    counts = {"passed": 0, "failed": 0, "errors": 0}
    for number, word in _SUMMARY.findall(text):
        counts["errors" if word.startswith("error") else word] += int(number)
    return TestReport(exit_code=exit_code, **counts)


def _last_test_run(episode: Episode, tools: tuple[str, ...], command_pattern: str) -> TestReport | None:
    pattern = re.compile(command_pattern)
    for rec in reversed(call_records(episode)):
        command = " ".join(str(v) for v in rec.call.arguments.values())
        if rec.call.name in tools and rec.result is not None and pattern.search(command):
            return report_from_output(rec.result.content)
    return None


def tests_pass(
    task: Task,
    episode: Episode,
    env: Any = None,
    *,
    tools: tuple[str, ...] = COMMAND_TOOLS,
    command_pattern: str = r"pytest|unittest|\btest",
    mode: Literal["fraction", "all"] = "fraction",
) -> float:
    """Share of tests passing (``mode="all"``: 1.0 only when all pass).

    Args:
        tools: Command tools whose results are read when the metadata holds no test report.
        command_pattern: Regex a command must match to count as a test run.
        mode: "fraction" of tests passing, or "all" of them.

    Raises:
        CheckUnscorable: neither the metadata nor any command result holds a test run.
    """
    report = shell_report(episode)
    tests = report.tests if report is not None and report.tests is not None else _last_test_run(episode, tools, command_pattern)
    if tests is None:
        raise CheckUnscorable(f"episode {episode.id!r} has no test report in metadata['shell'] and ran no test command")
    value = tests.fraction()
    return value if mode == "fraction" else float(value == 1.0)


def files_as_expected(task: Task, episode: Episode, env: Any = None, *, files: dict[str, Any] | None = None) -> float | None:
    """Share of expected files whose final content matches.

    Args:
        files: Path to expected content: a string (exact), None (must not exist), or a matcher
            mapping such as ``{"$regex": "def main"}`` or ``{"$sha256": "..."}``. Default
            ``task.metadata["expected_files"]``.

    Returns:
        None when no file is expected.

    Raises:
        CheckUnscorable: the episode's metadata reports no files.
    """
    expected = files if files is not None else task.metadata.get("expected_files")
    if not expected:
        return None
    report = shell_report(episode)
    if report is None or report.files is None:
        raise CheckUnscorable(f"episode {episode.id!r} has no metadata['shell']['files'] to compare with")
    hits = sum(
        (report.files.get(path) is None) if want is None else (path in report.files and value_matches(report.files[path], want, "exact"))
        for path, want in expected.items()
    )
    return hits / len(expected)
