"""Verifiable checks: small named functions of (task, episode[, env]) -> score in [0, 1] or None.

``register_check`` adds a plain function of your own; rubrics then refer to it by name.
"""

from toolgym.rubrics.checks.answer import answer_matches, normalize, numbers_in, required_outputs_present
from toolgym.rubrics.checks.base import CheckFn, CheckUnscorable
from toolgym.rubrics.checks.calls import (
    CallPattern,
    called_before,
    efficiency_vs_gold,
    forbidden_actions,
    gold_calls_made,
    tool_called,
    tool_not_called,
    well_formed_call_rate,
)
from toolgym.rubrics.checks.registry import (
    BUILTIN_CHECKS,
    CHECKS,
    get_check,
    register_check,
    run_check,
    validate_params,
)
from toolgym.rubrics.checks.shell import ShellReport, TestReport, files_as_expected, tests_pass
from toolgym.rubrics.checks.state import final_state_matches_gold

__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS",
    "CallPattern",
    "CheckFn",
    "CheckUnscorable",
    "ShellReport",
    "TestReport",
    "answer_matches",
    "called_before",
    "efficiency_vs_gold",
    "files_as_expected",
    "final_state_matches_gold",
    "forbidden_actions",
    "get_check",
    "gold_calls_made",
    "normalize",
    "numbers_in",
    "register_check",
    "required_outputs_present",
    "run_check",
    "tests_pass",
    "tool_called",
    "tool_not_called",
    "validate_params",
    "well_formed_call_rate",
]
