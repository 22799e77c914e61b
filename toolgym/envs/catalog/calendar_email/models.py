"""The calendar & email world: the owner, their contacts (with free/busy), events and emails.

Times are local wall-clock strings ``"YYYY-MM-DDTHH:MM"`` (one time zone), which sort and
compare as text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolgym.envs.api.domain import StateModel

Response = Literal["needs_action", "accepted", "declined", "tentative"]
Folder = Literal["inbox", "drafts", "sent"]


class Contact(StateModel):
    """Someone the owner works with; ``busy`` is what their calendar shares."""

    email: str
    name: str
    busy: list[tuple[str, str]] = Field(default_factory=list)
    """Busy intervals ``(start, end)`` from their own calendar (not events shown here)."""


class Event(StateModel):
    """A meeting on the owner's calendar."""

    event_id: str
    title: str
    start: str
    end: str
    organizer: str
    """Email of the organizer (the owner for events they created)."""
    attendees: dict[str, Response]
    """Invitees (never the organizer) and their answers."""
    location: str = ""
    status: Literal["confirmed", "cancelled"] = "confirmed"


class Email(StateModel):
    """A message in the owner's mailbox."""

    email_id: str
    sender: str
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    subject: str
    body: str
    folder: Folder
    in_reply_to: str | None = None


class CalendarState(StateModel):
    """The calendar and mailbox of one person for one task."""

    owner: str
    """The owner's email: the person the assistant works for."""
    owner_name: str
    org_domain: str
    """Addresses ending in ``@org_domain`` are internal."""
    contacts: dict[str, Contact]
    events: dict[str, Event]
    emails: dict[str, Email]
    next_id: int = 1000
    """Number used in the id of the next event or email created."""
