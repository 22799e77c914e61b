"""Seeded calendar & email worlds: one work week, six contacts, a few meetings and emails."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping

from toolgym.envs.catalog.calendar_email.clock import overlaps, owner_events, stamp
from toolgym.envs.catalog.calendar_email.models import CalendarState, Contact, Email, Event

FIRST = (
    "Ada",
    "Bruno",
    "Carmen",
    "Dmitri",
    "Esther",
    "Felix",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luis",
    "Mina",
    "Nils",
    "Olga",
    "Pavel",
)
LAST = (
    "Okafor",
    "Lindqvist",
    "Ferreira",
    "Ivanova",
    "Nakamura",
    "Osei",
    "Brennan",
    "Castillo",
    "Weber",
    "Dubois",
    "Kowalski",
    "Rossi",
)
ORGS = ("northwind.com", "acme-labs.io", "bluepeak.org", "tidewater.co")
EXTERNAL = ("partnerco.com", "gmail.com", "clientside.net")
TITLES = (
    "Budget review",
    "Sprint planning",
    "Design sync",
    "Customer call",
    "Hiring debrief",
    "Roadmap workshop",
    "Vendor demo",
    "Quarterly kickoff",
    "Launch retro",
    "Security review",
    "Pricing discussion",
    "Team lunch",
)
ROOMS = ("Room 2A", "Room 3C", "Cafe corner", "Video call", "Board room")
SUBJECTS = (
    "Contract renewal",
    "Offsite logistics",
    "Q3 numbers",
    "Draft proposal",
    "Onboarding plan",
    "Invoice 4471",
    "Conference talk",
    "Travel booking",
)
BODIES = (
    "Could you take a look and let me know what you think by Friday?",
    "Attached are the latest figures. Happy to walk you through them.",
    "Quick question before I send this out: are we aligned on the scope?",
    "Following up on our chat last week; what would be a good next step?",
)


def week(rng: random.Random) -> list[str]:
    """Monday to Friday of a random 2025 week, as dates."""
    monday = dt.date(2025, 1, 6) + dt.timedelta(weeks=rng.randrange(45))
    return [(monday + dt.timedelta(days=i)).isoformat() for i in range(5)]


def _person(rng: random.Random, domain: str, taken: set[str]) -> tuple[str, str]:
    while True:  # names are unique within a world, so "Ada Okafor" names one contact
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if f"{first} {last}" not in taken:
            taken.add(f"{first} {last}")
            return f"{first}.{last}@{domain}".lower(), f"{first} {last}"


def _new_id(rng: random.Random, prefix: str, taken: Mapping[str, object]) -> str:
    while True:
        new = f"{prefix}_{rng.randrange(16**4):04x}"
        if new not in taken:
            return new


def free_start(rng: random.Random, state: CalendarState, date: str, length: int, skip: str | None = None) -> int | None:
    """A random half-hour start in 09:00-17:00 on ``date`` where the owner has nothing for ``length`` minutes."""
    busy = [(e.start, e.end) for e in owner_events(state, skip)]
    lo, hi = 9 * 60, 17 * 60
    starts = [
        m
        for m in range(lo, hi - length + 1, 30)
        if not any(overlaps((stamp(date, m), stamp(date, m + length)), b) for b in busy)
    ]
    return rng.choice(starts) if starts else None


def make_world(rng: random.Random) -> tuple[CalendarState, list[str]]:
    """A world and its week (the dates Monday..Friday)."""
    days = week(rng)
    org = rng.choice(ORGS)
    taken: set[str] = set()
    owner, owner_name = _person(rng, org, taken)
    people = [_person(rng, org, taken) for _ in range(4)] + [
        _person(rng, rng.choice(EXTERNAL), taken) for _ in range(2)
    ]
    contacts = {}
    for email, name in people:
        busy = []
        for date in rng.sample(days, 2):
            for _ in range(rng.randint(1, 3)):
                start = rng.randrange(9 * 60, 16 * 60, 30)
                busy.append((stamp(date, start), stamp(date, start + rng.choice((30, 60, 90)))))
        contacts[email] = Contact(email=email, name=name, busy=sorted(busy))
    state = CalendarState(owner=owner, owner_name=owner_name, org_domain=org, contacts=contacts, events={}, emails={})
    internal = [e for e, _ in people[:4]]
    for i, title in enumerate(rng.sample(TITLES, 6)):
        date, length = rng.choice(days), rng.choice((30, 60))
        slot = free_start(rng, state, date, length)
        if slot is None:
            continue
        invited = rng.sample(internal, rng.randint(1, 3))
        if i < 3:  # the owner organizes
            organizer, attendees = owner, {a: rng.choice(("accepted", "needs_action")) for a in invited}
        else:  # the owner is invited
            organizer = invited[0]
            attendees = {a: "accepted" for a in invited[1:]} | {owner: rng.choice(("accepted", "needs_action"))}
        event_id = _new_id(rng, "evt", state.events)
        state.events[event_id] = Event(
            event_id=event_id, title=title, start=stamp(date, slot), end=stamp(date, slot + length),
            organizer=organizer, attendees=attendees, location=rng.choice(ROOMS),
        )  # fmt: skip
    for subject in rng.sample(SUBJECTS, 4):
        sender = rng.choice(people)[0]
        email_id = _new_id(rng, "msg", state.emails)
        state.emails[email_id] = Email(
            email_id=email_id, sender=sender, to=[owner], subject=subject, body=rng.choice(BODIES), folder="inbox"
        )
    return state, days
