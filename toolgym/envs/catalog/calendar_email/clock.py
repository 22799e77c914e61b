"""Wall-clock arithmetic on ``"YYYY-MM-DDTHH:MM"`` strings, and the calendar's busy rules."""

from __future__ import annotations

import datetime as dt
import re

from toolgym.envs.catalog.calendar_email.models import CalendarState, Event

WORK_START, WORK_END = 8 * 60, 18 * 60
"""Working hours in minutes after midnight: meetings must fit 08:00-18:00."""
STEP = 15
"""Meetings start and last in multiples of 15 minutes."""
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def check_date(date: str) -> str:
    """``date`` if it is ``YYYY-MM-DD``, else ``ValueError`` with the expected form."""
    try:
        dt.date.fromisoformat(date)
    except (ValueError, TypeError):
        raise ValueError(f"date must look like 2025-03-04, got {date!r}") from None
    if len(date) != 10:
        raise ValueError(f"date must look like 2025-03-04, got {date!r}")
    return date


def minutes(hhmm: str) -> int:
    """``"09:30"`` -> 570; ``ValueError`` for anything else."""
    match = _TIME.match(hhmm)
    if not match:
        raise ValueError(f"time must look like 09:30 (24-hour), got {hhmm!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def hhmm(total: int) -> str:
    """570 -> ``"09:30"``."""
    return f"{total // 60:02d}:{total % 60:02d}"


def stamp(date: str, total: int) -> str:
    """A ``"YYYY-MM-DDTHH:MM"`` string for ``total`` minutes after midnight of ``date``."""
    return f"{date}T{hhmm(total)}"


def day_minutes(value: str) -> tuple[str, int]:
    """``"2025-03-04T09:30"`` -> ``("2025-03-04", 570)``."""
    return value[:10], minutes(value[11:])


def overlaps(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two ``(start, end)`` intervals share any minute (touching ends do not)."""
    return a[0] < b[1] and b[0] < a[1]


def owner_events(state: CalendarState, skip: str | None = None) -> list[Event]:
    """Events the owner is committed to: confirmed, and organized or accepted (or tentatively)."""
    return [
        e
        for e in state.events.values()
        if e.event_id != skip
        and e.status == "confirmed"
        and (e.organizer == state.owner or e.attendees.get(state.owner) in ("accepted", "tentative"))
    ]


def person_busy(state: CalendarState, email: str) -> list[tuple[str, str]]:
    """What blocks ``email``: the owner's commitments, or a contact's shared busy times plus
    the events here that they organize or have not declined."""
    if email == state.owner:
        return [(e.start, e.end) for e in owner_events(state)]
    busy = list(state.contacts[email].busy)
    for e in state.events.values():
        if e.status == "confirmed" and (e.organizer == email or e.attendees.get(email, "declined") != "declined"):
            busy.append((e.start, e.end))
    return busy


def involves_owner(state: CalendarState, event: Event) -> bool:
    """The owner organizes or is invited to ``event``."""
    return event.organizer == state.owner or state.owner in event.attendees
