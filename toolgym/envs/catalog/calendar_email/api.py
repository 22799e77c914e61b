"""The calendar & email API of one person. Tools enforce the rules of ``policy.md``.

Writes check everything before changing anything; reads return fresh JSON data.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from toolgym.envs.api.barrier import reading
from toolgym.envs.api.domain import Domain, NotFound, PolicyViolation
from toolgym.envs.catalog.calendar_email.clock import (
    STEP,
    WORK_END,
    WORK_START,
    check_date,
    day_minutes,
    hhmm,
    involves_owner,
    minutes,
    overlaps,
    owner_events,
    person_busy,
    stamp,
)  # fmt: skip
from toolgym.envs.catalog.calendar_email.models import CalendarState, Email, Event, Folder
from toolgym.envs.tools import tool

_ADDRESS = re.compile(r"^[\w.+\-]+@[\w\-]+(\.[\w\-]+)+$")


class CalendarEmailApi(Domain[CalendarState]):
    """Calendar, contacts and mailbox of the owner, behind a scheduling and email policy."""

    state_model = CalendarState

    # ------------------------------------------------------------------ reads

    @tool(read_only=True)
    def search_contacts(self, query: str) -> list[dict[str, str]]:
        """Contacts whose name or email contains the query (case-insensitive).

        Args:
            query: Part of a name or an email address, e.g. "Okafor".
        """
        q = query.strip().lower()
        if not q:
            raise ValueError("query must not be empty")
        return [
            {"email": c.email, "name": c.name}
            for c in self.state.contacts.values()
            if q in c.name.lower() or q in c.email
        ]

    @tool(read_only=True)
    def list_events(self, date: str) -> list[dict[str, Any]]:
        """The owner's events on one day (organized or invited), by start time.

        Args:
            date: The day, e.g. "2025-03-04".
        """
        check_date(date)
        owner = self.state.owner
        events = sorted(
            (e for e in self.state.events.values() if e.start[:10] == date and involves_owner(self.state, e)),
            key=lambda e: e.start,
        )
        return [
            {"event_id": e.event_id, "title": e.title, "start": e.start, "end": e.end, "organizer": e.organizer,
             "status": e.status, "my_response": "organizer" if e.organizer == owner else e.attendees[owner]}
            for e in events
        ]  # fmt: skip

    @tool(read_only=True)
    def get_event(self, event_id: str) -> dict[str, Any]:
        """Everything about one of the owner's events, attendees' answers included.

        Args:
            event_id: The event's id, e.g. "evt_1a2b".
        """
        return self._event(event_id).model_dump(mode="json")

    @tool(read_only=True)
    def find_free_slots(
        self,
        date: str,
        duration_minutes: int,
        attendees: list[str] | None = None,
        earliest: str = "09:00",
        latest: str = "17:00",
    ) -> dict[str, Any]:
        """Half-hour start times when the owner and all attendees are free for the whole duration.

        Args:
            date: The day, e.g. "2025-03-04".
            duration_minutes: Meeting length (a multiple of 15).
            attendees: Emails of the other people (contacts) who must be free.
            earliest: Earliest start, "HH:MM".
            latest: Time the meeting must end by, "HH:MM".
        """
        check_date(date)
        lo, hi = minutes(earliest), minutes(latest)
        _check_duration(duration_minutes)
        people = [self.state.owner] + [self._contact(a) for a in attendees or []]
        busy = [b for p in people for b in person_busy(self.state, p)]
        slots = []
        for m in range(lo + (-lo) % 30, hi - duration_minutes + 1, 30):
            window = (stamp(date, m), stamp(date, m + duration_minutes))  # once per slot, not per busy interval
            if not any(overlaps(window, b) for b in busy):
                slots.append(hhmm(m))
        return {"date": date, "duration_minutes": duration_minutes, "slots": slots}

    @tool(read_only=True)
    def search_emails(self, query: str, folder: Folder | None = None) -> list[dict[str, str]]:
        """Emails whose subject, body or sender contains the query (case-insensitive).

        Args:
            query: Words to look for, e.g. "contract".
            folder: Only this folder: "inbox", "drafts" or "sent".
        """
        q = query.strip().lower()
        found = []
        for m in self.state.emails.values():
            sender_name = self.state.contacts[m.sender].name if m.sender in self.state.contacts else ""
            text = f"{m.subject}\n{m.body}\n{m.sender}\n{sender_name}".lower()
            if (folder is None or m.folder == folder) and q in text:
                found.append({"email_id": m.email_id, "sender": m.sender, "subject": m.subject, "folder": m.folder})
        return found

    @tool(read_only=True)
    def read_email(self, email_id: str) -> dict[str, Any]:
        """One email in full.

        Args:
            email_id: The email's id, e.g. "msg_3f2a".
        """
        return self._email(email_id).model_dump(mode="json")

    # ------------------------------------------------------------------ calendar writes

    @tool
    def create_event(
        self, title: str, date: str, start_time: str, duration_minutes: int, attendees: list[str], location: str = ""
    ) -> dict[str, Any]:
        """Create a meeting organized by the owner and invite contacts to it.

        Args:
            title: Meeting title.
            date: The day, e.g. "2025-03-04".
            start_time: Start, "HH:MM" in 15-minute steps.
            duration_minutes: Length (a multiple of 15).
            attendees: Contact emails to invite (not the owner).
            location: Room or "Video call"; optional.
        """
        if not title.strip():
            raise ValueError("title must not be empty")
        start, end = _interval(date, start_time, duration_minutes)
        invited = [self._contact(a) for a in attendees]
        if len(set(invited)) != len(invited):
            raise ValueError("each attendee may appear only once")
        self._require_free(start, end)
        event = Event(event_id=self._next_id("evt"), title=title.strip(), start=start, end=end, organizer=self.state.owner,
                      attendees={a: "needs_action" for a in invited}, location=location.strip())  # fmt: skip
        self.state.events[event.event_id] = event
        return event.model_dump(mode="json")

    @tool
    def respond_to_invitation(
        self, event_id: str, response: Literal["accepted", "declined", "tentative"]
    ) -> dict[str, Any]:
        """Answer an invitation the owner received.

        Args:
            event_id: The event the owner is invited to.
            response: "accepted", "declined" or "tentative".
        """
        event = self._event(event_id)
        if event.organizer == self.state.owner:
            raise PolicyViolation("the owner organizes this event; reschedule or cancel it instead of answering")
        if event.status == "cancelled":
            raise PolicyViolation(f"event {event_id} was cancelled by its organizer; there is nothing to answer")
        if response != "declined":
            self._require_free(event.start, event.end, skip=event_id)
        event.attendees[self.state.owner] = response
        return {"event_id": event_id, "my_response": response}

    @tool
    def reschedule_event(self, event_id: str, date: str, start_time: str) -> dict[str, Any]:
        """Move an event the owner organizes; it keeps its length and attendees must answer again.

        Args:
            event_id: The event to move.
            date: New day, e.g. "2025-03-05".
            start_time: New start, "HH:MM" in 15-minute steps.
        """
        event = self._organized(event_id, "move")
        length = _length(event)
        start, end = _interval(date, start_time, length)
        self._require_free(start, end, skip=event_id)
        event.start, event.end = start, end
        event.attendees = {a: "needs_action" for a in event.attendees}
        return event.model_dump(mode="json")

    @tool
    def cancel_event(self, event_id: str, confirm: bool = False) -> dict[str, Any]:
        """Cancel an event the owner organizes; attendees get a cancellation email automatically.

        Args:
            event_id: The event to cancel.
            confirm: True only after the owner explicitly agreed to cancel it.
        """
        event = self._organized(event_id, "cancel")
        if not confirm:
            raise PolicyViolation(
                "cancelling a meeting needs the owner's explicit confirmation; ask, then call again with confirm=true"
            )
        event.status = "cancelled"
        notice = None
        if event.attendees:
            date, start = day_minutes(event.start)
            notice = self._add_email(
                to=sorted(event.attendees), subject=f"Cancelled: {event.title}", folder="sent",
                body=f"'{event.title}' on {date} at {hhmm(start)} has been cancelled.",
            )  # fmt: skip
        return {"event_id": event_id, "status": "cancelled", "notice_email_id": notice}

    # ------------------------------------------------------------------ email writes

    @tool
    def draft_email(
        self, to: list[str], subject: str, body: str, cc: list[str] | None = None, in_reply_to: str | None = None
    ) -> dict[str, str]:
        """Write an email into the drafts folder (send it with send_email).

        Args:
            to: Recipient addresses.
            subject: Subject line.
            body: Message text.
            cc: Copy recipients.
            in_reply_to: Id of the email this answers, if any.
        """
        if not to:
            raise ValueError("to must name at least one recipient")
        for address in [*to, *(cc or [])]:
            if not _ADDRESS.match(address):
                raise ValueError(f"{address!r} is not an email address")
        if not subject.strip():
            raise ValueError("subject must not be empty")
        if in_reply_to is not None:
            self._email(in_reply_to)
        email_id = self._add_email(
            to=list(to), cc=list(cc or []), subject=subject.strip(), body=body, folder="drafts", in_reply_to=in_reply_to
        )
        return {"email_id": email_id, "folder": "drafts"}

    @tool
    def send_email(self, email_id: str, confirm_external: bool = False) -> dict[str, Any]:
        """Send a draft.

        Args:
            email_id: The draft to send.
            confirm_external: Must be true when a recipient is outside the owner's organization;
                set it only when the owner explicitly asked to write to that person.
        """
        email = self._email(email_id)
        if email.folder != "drafts":
            raise PolicyViolation(
                f"email {email_id} is in {email.folder}; only drafts can be sent (write one with draft_email)"
            )
        external = [a for a in [*email.to, *email.cc] if not a.endswith("@" + self.state.org_domain)]
        if external and not confirm_external:
            raise PolicyViolation(
                f"{', '.join(external)} {'is' if len(external) == 1 else 'are'} outside {self.state.org_domain}; "
                "send with confirm_external=true only if the owner explicitly asked to write to them"
            )
        email.folder = "sent"
        return {"email_id": email_id, "folder": "sent", "recipients": [*email.to, *email.cc]}

    # ------------------------------------------------------------------ helpers (not tools)

    def _event(self, event_id: str) -> Event:
        event = self.state.events.get(event_id)
        if event is None or not involves_owner(self.state, event):
            raise NotFound(f"no event {event_id!r} on the owner's calendar; list_events shows a day's events")
        return event

    def _organized(self, event_id: str, verb: str) -> Event:
        event = self._event(event_id)
        if event.organizer != self.state.owner:
            raise PolicyViolation(
                f"only the organizer ({event.organizer}) may {verb} this event; decline the invitation instead"
            )
        if event.status == "cancelled":
            raise PolicyViolation(f"event {event_id} is already cancelled")
        return event

    def _contact(self, email: str) -> str:
        if email == self.state.owner:
            raise ValueError("the owner is always part of their own meetings; list only the other people")
        if email not in self.state.contacts:
            raise NotFound(f"{email!r} is not a contact; find addresses with search_contacts")
        return email

    def _email(self, email_id: str) -> Email:
        email = self.state.emails.get(email_id)
        if email is None:
            raise NotFound(f"no email {email_id!r}; search_emails finds messages")
        return email

    def _require_free(self, start: str, end: str, skip: str | None = None) -> None:
        with reading():  # a scan of the calendar: no event in it is written
            for other in owner_events(self.state, skip):
                if overlaps((start, end), (other.start, other.end)):
                    raise PolicyViolation(
                        f"the owner already has '{other.title}' ({other.start[11:]}-{other.end[11:]}) on {start[:10]}; "
                        "no double booking: pick a free time (find_free_slots) or decline"
                    )

    def _next_id(self, prefix: str) -> str:
        self.state.next_id += 1
        return f"{prefix}_{self.state.next_id - 1}"

    def _add_email(self, **fields: Any) -> str:
        email = Email(email_id=self._next_id("msg"), sender=self.state.owner, **fields)
        self.state.emails[email.email_id] = email
        return email.email_id


def _check_duration(duration_minutes: int) -> None:
    if duration_minutes <= 0 or duration_minutes % STEP or duration_minutes > WORK_END - WORK_START:
        raise ValueError(f"duration_minutes must be a positive multiple of {STEP} up to 600, got {duration_minutes}")


def _interval(date: str, start_time: str, duration_minutes: int) -> tuple[str, str]:
    check_date(date)
    _check_duration(duration_minutes)
    start = minutes(start_time)
    if start % STEP:
        raise ValueError(f"start_time must be on a {STEP}-minute step (e.g. 09:15), got {start_time!r}")
    if start < WORK_START or start + duration_minutes > WORK_END:
        raise PolicyViolation(f"meetings must fit working hours {hhmm(WORK_START)}-{hhmm(WORK_END)}")
    return stamp(date, start), stamp(date, start + duration_minutes)


def _length(event: Event) -> int:
    (d1, m1), (d2, m2) = day_minutes(event.start), day_minutes(event.end)
    return m2 - m1 if d1 == d2 else m2 - m1 + 24 * 60
