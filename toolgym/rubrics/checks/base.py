"""What every verifiable check shares: its signature, the 'cannot tell' signal, typed params.

A check is a plain function ``check(task, episode, env=None, **params) -> float | None``
whose name is its metric name. It returns a value in [0, 1], or None when it does not apply to
this task (no gold actions, no required outputs). When it applies but the episode lacks what it
needs, it raises ``CheckUnscorable`` so the criterion is unscorable rather than 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator

from toolgym.rubrics.matchers import ArgumentSpec, validate_spec

CheckFn = Callable[..., float | None]


class CheckUnscorable(Exception):
    """The check applies, but the episode lacks the data to decide it (for example no digest).

    Raised inside a check; the scorer turns it into an ``Unscorable(kind="missing_data")``.
    """


def _valid_spec(spec: Any) -> Any:
    validate_spec(spec, "arguments")
    return spec


Arguments = Annotated[ArgumentSpec, AfterValidator(_valid_spec)]
"""An argument matcher param: None, a predicate, or a mapping (operators checked on load)."""
