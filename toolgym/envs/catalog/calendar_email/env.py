"""``CalendarEmailEnv``: one person's calendar and mailbox behind a scheduling and email policy."""

from __future__ import annotations

from pathlib import Path

from toolgym.envs.api.env import ApiEnv, system_prompt_with_policy
from toolgym.envs.catalog.calendar_email.api import CalendarEmailApi
from toolgym.envs.catalog.calendar_email.tasks import generate_task

HERE = Path(__file__).parent
INTRO = "You are the executive assistant of the person writing to you. You manage their calendar and email with the tools, following the policy below."


class CalendarEmailEnv(ApiEnv):
    """Meetings, invitations, free/busy lookups and email drafts for one person."""

    domain = CalendarEmailApi
    system_prompt = system_prompt_with_policy(INTRO, HERE / "policy.md")
    task_generator = staticmethod(generate_task)
    eval_split = HERE / "eval.jsonl"
    atomic_calls = False  # its tools check every rule before they write (fuzz_step.py verifies it)
    sync_tools_inline = True  # its tools only compute on the state model: no worker thread on an event loop
