"""Calendar & email policy enforcement: double booking, hours, organizers, confirmation, email."""

from __future__ import annotations

from api_domains import call, env_with, output, refused

from toolgym.envs.catalog.calendar_email.clock import day_minutes, hhmm, overlaps, person_busy, stamp

ENV = "toolgym/calendar_email-v0"


def test_no_double_booking_and_working_hours():
    env, _ = env_with(ENV, "cancel_meeting", steps=0)
    state = env.api.state
    mine = next(e for e in state.events.values() if e.organizer == state.owner)
    date, start = day_minutes(mine.start)
    someone = next(iter(state.contacts))
    clash = call(
        env, "create_event", title="Clash", date=date, start_time=hhmm(start), duration_minutes=30, attendees=[someone]
    )
    assert refused(clash, "no double booking")
    assert refused(
        call(env, "create_event", title="Late", date=date, start_time="17:45", duration_minutes=30, attendees=[]),
        "working hours",
    )
    assert refused(
        call(env, "create_event", title="Odd", date=date, start_time="09:10", duration_minutes=30, attendees=[]),
        "15-minute step",
    )
    assert refused(
        call(
            env,
            "create_event",
            title="Who",
            date=date,
            start_time="08:00",
            duration_minutes=15,
            attendees=["nobody@nowhere.com"],
        ),
        "not a contact",
    )


def test_free_slots_are_really_free():
    env, task = env_with(ENV, "schedule_meeting", steps=0)
    args = next(a.arguments for a in task.gold_actions if a.name == "find_free_slots")
    slots = output(call(env, "find_free_slots", **args))["slots"]
    assert slots and slots[0] == next(a.arguments["start_time"] for a in task.gold_actions if a.name == "create_event")
    state = env.api.state
    for slot in slots:
        start = stamp(args["date"], int(slot[:2]) * 60 + int(slot[3:]))
        end = stamp(args["date"], int(slot[:2]) * 60 + int(slot[3:]) + args["duration_minutes"])
        for person in [state.owner, *args["attendees"]]:
            assert not any(overlaps((start, end), busy) for busy in person_busy(state, person))


def test_only_organizers_move_or_cancel():
    env, task = env_with(ENV, "decline_not_organizer")
    event_id = task.gold_actions[-1].arguments["event_id"]
    date = env.api.state.events[event_id].start[:10]
    assert refused(call(env, "cancel_event", event_id=event_id, confirm=True), "only the organizer")
    assert refused(
        call(env, "reschedule_event", event_id=event_id, date=date, start_time="08:00"), "only the organizer"
    )


def test_cancelling_needs_confirmation_and_notifies():
    env, task = env_with(ENV, "cancel_meeting")
    event_id = task.gold_actions[-1].arguments["event_id"]
    before = env.state_digest()
    assert refused(call(env, "cancel_event", event_id=event_id), "explicit confirmation")
    assert env.state_digest() == before
    result = output(call(env, "cancel_event", event_id=event_id, confirm=True))
    notice = env.api.state.emails[result["notice_email_id"]]
    assert notice.folder == "sent" and notice.to == sorted(env.api.state.events[event_id].attendees)
    assert refused(call(env, "respond_to_invitation", event_id=event_id, response="accepted"), "organizes this event")


def test_external_email_needs_explicit_confirmation():
    env, _ = env_with(ENV, "reply_email", steps=0)
    state = env.api.state
    outsider = next(c.email for c in state.contacts.values() if not c.email.endswith("@" + state.org_domain))
    draft = output(call(env, "draft_email", to=[outsider], subject="Hello", body="Hi there"))
    assert refused(call(env, "send_email", email_id=draft["email_id"]), "outside")
    assert state.emails[draft["email_id"]].folder == "drafts"
    assert output(call(env, "send_email", email_id=draft["email_id"], confirm_external=True))["folder"] == "sent"
    assert refused(
        call(env, "send_email", email_id=draft["email_id"], confirm_external=True), "only drafts can be sent"
    )
    assert refused(call(env, "draft_email", to=["not-an-address"], subject="x", body="y"), "not an email address")


def test_accepting_a_clashing_invitation_is_refused():
    env, task = env_with(ENV, "answer_invite", steps=0)
    event_id = task.gold_actions[-1].arguments["event_id"]
    expected = task.gold_actions[-1].arguments["response"]
    message = call(env, "respond_to_invitation", event_id=event_id, response="accepted")
    if expected == "declined":
        assert refused(message, "no double booking")
    else:
        assert output(message) == {"event_id": event_id, "my_response": "accepted"}
