"""``BankingEnv``: a retail bank's support API behind its policy, with seeded tasks."""

from __future__ import annotations

from pathlib import Path

from toolgym.envs.api.env import ApiEnv, system_prompt_with_policy
from toolgym.envs.catalog.banking.api import BankingApi
from toolgym.envs.catalog.banking.tasks import generate_task

HERE = Path(__file__).parent
INTRO = "You are a support agent of a retail bank. Help the caller with the tools, following the policy below."


class BankingEnv(ApiEnv):
    """Accounts, transfers, payees, cards, limits and disputes of a bank's customers."""

    domain = BankingApi
    system_prompt = system_prompt_with_policy(INTRO, HERE / "policy.md")
    task_generator = staticmethod(generate_task)
    eval_split = HERE / "eval.jsonl"
    atomic_calls = False  # its tools check every rule before they write (fuzz_step.py verifies it)
    sync_tools_inline = True  # its tools only compute on the state model: no worker thread on an event loop
