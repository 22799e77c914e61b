"""Seeded calendar & email tasks with gold actions and an expected final state.

The expected state is written from each task's meaning (this event now starts at 10:30, a
cancellation notice to these people exists) rather than by running the tools; only the pure
time helpers of ``clock`` are shared.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass

from toolgym.envs.api.drafts import Draft as BaseDraft
from toolgym.envs.api.drafts import Family, seeded_task
from toolgym.envs.catalog.calendar_email.clock import day_minutes, hhmm, overlaps, owner_events, person_busy, stamp
from toolgym.envs.catalog.calendar_email.models import CalendarState, Email, Event
from toolgym.envs.catalog.calendar_email.world import TITLES, free_start, make_world
from toolgym.envs.types import Task

REPLIES = (
    "Thanks, that works for me.",
    "Sounds good, let's discuss on Thursday.",
    "Got it. I will review and reply by Friday.",
    "Thanks! Please send the final version when ready.",
)


@dataclass(kw_only=True)
class Draft(BaseDraft[CalendarState]):
    """A calendar & email task under construction; every task is set in the week ``days``."""

    days: list[str]

    def task_instruction(self) -> str:
        """The instruction behind who writes it and which week it is (tasks name days, not dates)."""
        return f"(From {self.world.owner_name}, {self.world.owner}; this week is {self.days[0]} to {self.days[-1]}.) {self.instruction}"


def _day(date: str) -> str:
    return f"{dt.date.fromisoformat(date).strftime('%A')} {date}"


def _owner_invites(state: CalendarState) -> list[Event]:
    return [e for e in state.events.values() if e.organizer != state.owner and state.owner in e.attendees]


def _organized(state: CalendarState) -> list[Event]:
    return [e for e in state.events.values() if e.organizer == state.owner and e.attendees]


def _world_with(rng: random.Random, need: Callable[[CalendarState], list[Event]]) -> tuple[Draft, Event]:
    while True:  # some worlds lack the kind of event a family needs; draw again (still seeded)
        world, days = make_world(rng)
        found = need(world)
        if found:
            return Draft(world=world, days=days), rng.choice(found)


# ---------------------------------------------------------------------- families


def schedule_meeting(rng: random.Random) -> Draft:
    """Book a meeting with two contacts at the earliest slot all three are free."""
    while True:
        world, days = make_world(rng)
        draft = Draft(world=world, days=days)
        date, length = rng.choice(days), rng.choice((30, 45, 60))
        people = rng.sample(sorted(world.contacts), 2)
        busy = [b for p in [world.owner, *people] for b in person_busy(world, p)]
        slots = [
            m
            for m in range(9 * 60, 17 * 60 - length + 1, 30)
            if not any(overlaps((stamp(date, m), stamp(date, m + length)), b) for b in busy)
        ]
        if slots:
            break
    draft.freeze()
    title = rng.choice([t for t in TITLES if t not in {e.title for e in world.events.values()}])
    names = [world.contacts[p].name for p in people]
    for name in names:
        draft.call("search_contacts", query=name)
    draft.call("find_free_slots", date=date, duration_minutes=length, attendees=people)
    start = slots[0]
    draft.call(
        "create_event", title=title, date=date, start_time=hhmm(start), duration_minutes=length, attendees=people
    )
    draft.instruction = (
        f"Set up a {length}-minute meeting called '{title}' with {names[0]} and {names[1]} on {_day(date)}, "
        "at the earliest time when all three of us are free between 09:00 and 17:00. No location needed."
    )
    event_id = f"evt_{world.next_id}"
    draft.final.events[event_id] = Event(
        event_id=event_id, title=title, start=stamp(date, start), end=stamp(date, start + length),
        organizer=world.owner, attendees={p: "needs_action" for p in people},
    )  # fmt: skip
    draft.final.next_id += 1
    draft.outputs = [hhmm(start)]
    draft.answer = f"'{title}' is booked on {_day(date)} at {hhmm(start)} and {names[0]} and {names[1]} are invited."
    return draft


def answer_invite(rng: random.Random) -> Draft:
    """Accept an invitation unless it clashes with a commitment; then decline it."""
    draft, invite = _world_with(rng, _owner_invites)
    world = draft.world
    mine = [e for e in owner_events(world, skip=invite.event_id)]
    if mine and rng.random() < 0.5:  # make the invitation clash with a commitment
        other = rng.choice(mine)
        invite.start, invite.end = other.start, stamp(other.start[:10], day_minutes(other.start)[1] + 30)
    invite.attendees[world.owner] = "needs_action"
    draft.freeze()
    clash = any(
        overlaps((invite.start, invite.end), (e.start, e.end)) for e in owner_events(world, skip=invite.event_id)
    )
    response = "declined" if clash else "accepted"
    date = invite.start[:10]
    draft.call("list_events", date=date)
    draft.call("respond_to_invitation", event_id=invite.event_id, response=response)
    draft.instruction = (
        f"Please accept the invitation to '{invite.title}' on {_day(date)}, unless it clashes with something "
        "I have already committed to; in that case decline it."
    )
    draft.final.events[invite.event_id].attendees[world.owner] = response  # type: ignore[assignment]  # a Response literal drawn from its values
    draft.outputs = [response]
    draft.answer = f"I {response} '{invite.title}'" + (" because it clashes with another meeting." if clash else ".")
    return draft


def decline_not_organizer(rng: random.Random) -> Draft:
    """The owner asks to cancel a meeting they do not organize: decline it instead."""
    draft, invite = _world_with(rng, _owner_invites)
    draft.freeze()
    date = invite.start[:10]
    draft.call("list_events", date=date)
    draft.call("respond_to_invitation", event_id=invite.event_id, response="declined")
    draft.instruction = f"I can't make '{invite.title}' on {_day(date)}. Cancel it for me."
    draft.final.events[invite.event_id].attendees[draft.world.owner] = "declined"
    organizer = draft.world.contacts[invite.organizer].name
    draft.outputs = ["declined"]
    draft.answer = (
        f"Only the organizer, {organizer}, can cancel '{invite.title}', so I declined the invitation for you."
    )
    return draft


def reschedule(rng: random.Random) -> Draft:
    """Move a meeting the owner organizes to a given free time."""
    while True:
        draft, event = _world_with(rng, _organized)
        date, length = rng.choice(draft.days), day_minutes(event.end)[1] - day_minutes(event.start)[1]
        start = free_start(rng, draft.world, date, length, skip=event.event_id)
        if start is not None and stamp(date, start) != event.start:
            break
    draft.freeze()
    old_date = event.start[:10]
    draft.call("list_events", date=old_date)
    draft.call("reschedule_event", event_id=event.event_id, date=date, start_time=hhmm(start))
    draft.instruction = f"Move my '{event.title}' meeting on {_day(old_date)} to {_day(date)} at {hhmm(start)}."
    moved = draft.final.events[event.event_id]
    moved.start, moved.end = stamp(date, start), stamp(date, start + length)
    moved.attendees = {a: "needs_action" for a in moved.attendees}
    draft.outputs = [hhmm(start)]
    draft.answer = (
        f"'{event.title}' now starts {_day(date)} at {hhmm(start)}; the attendees have been asked to answer again."
    )
    return draft


def cancel_meeting(rng: random.Random) -> Draft:
    """Cancel a meeting the owner organizes (confirmed); attendees get a notice."""
    draft, event = _world_with(rng, _organized)
    draft.freeze()
    date, start = day_minutes(event.start)
    draft.call("list_events", date=date)
    draft.call("cancel_event", event_id=event.event_id, confirm=True)
    draft.instruction = f"Cancel my '{event.title}' meeting on {_day(date)} and let the attendees know. Yes, I'm sure."
    final = draft.final
    final.events[event.event_id].status = "cancelled"
    notice_id = f"msg_{final.next_id}"
    final.emails[notice_id] = Email(
        email_id=notice_id, sender=final.owner, to=sorted(event.attendees), folder="sent",
        subject=f"Cancelled: {event.title}", body=f"'{event.title}' on {date} at {hhmm(start)} has been cancelled.",
    )  # fmt: skip
    final.next_id += 1
    draft.answer = f"'{event.title}' on {_day(date)} is cancelled and the attendees were notified."
    return draft


def reply_email(rng: random.Random) -> Draft:
    """Reply to an email with given text: draft, then send (external recipients confirmed)."""
    world, days = make_world(rng)
    draft = Draft(world=world, days=days)
    draft.freeze()
    original = rng.choice([m for m in world.emails.values() if m.folder == "inbox"])
    sender = world.contacts[original.sender]
    text = rng.choice(REPLIES)
    external = not sender.email.endswith("@" + world.org_domain)
    reply_id, subject = f"msg_{world.next_id}", f"Re: {original.subject}"
    draft.call("search_emails", query=original.subject)
    draft.call("draft_email", to=[sender.email], subject=subject, body=text, in_reply_to=original.email_id)
    draft.call("send_email", email_id=reply_id, confirm_external=external)
    draft.instruction = f"Reply to {sender.name}'s email '{original.subject}' with the subject '{subject}' and exactly this text: {text}"
    draft.final.emails[reply_id] = Email(
        email_id=reply_id,
        sender=world.owner,
        to=[sender.email],
        subject=subject,
        body=text,
        folder="sent",
        in_reply_to=original.email_id,
    )
    draft.final.next_id += 1
    draft.answer = f"I sent your reply to {sender.name}."
    return draft


def event_info(rng: random.Random) -> Draft:
    """Read-only: when and where a meeting is, and who organizes it."""
    draft, event = _world_with(rng, lambda s: [e for e in s.events.values() if e.location])
    draft.freeze()
    date, start = day_minutes(event.start)
    draft.call("list_events", date=date)
    draft.call("get_event", event_id=event.event_id)
    organizer = (
        draft.world.owner_name if event.organizer == draft.world.owner else draft.world.contacts[event.organizer].name
    )
    draft.instruction = f"When does '{event.title}' on {_day(date)} start, where is it, and who organizes it?"
    draft.outputs = [hhmm(start), event.location]
    draft.answer = f"'{event.title}' starts at {hhmm(start)} in {event.location}; {organizer} organizes it."
    return draft


FAMILIES: dict[str, Family] = {
    f.__name__: f
    for f in (
        schedule_meeting,
        answer_invite,
        decline_not_organizer,
        reschedule,
        cancel_meeting,
        reply_email,
        event_info,
    )
}


def generate_task(seed: int, split: str = "train") -> Task:
    """The calendar & email task for ``seed`` in ``split`` ("train" or "eval")."""
    return seeded_task("calendar_email", FAMILIES, seed, split)
