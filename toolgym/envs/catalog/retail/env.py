"""``RetailEnv``: the retail API behind its policy, with seeded tasks and a shipped eval split."""

from __future__ import annotations

from pathlib import Path

from toolgym.envs.api.env import ApiEnv, system_prompt_with_policy
from toolgym.envs.catalog.retail.api import RetailApi
from toolgym.envs.catalog.retail.tasks import generate_task

HERE = Path(__file__).parent
INTRO = "You are a customer-service agent of an online shop. Use the tools to help the customer, following the policy below."


class RetailEnv(ApiEnv):
    """Orders, cancellations, returns, exchanges and addresses of an online shop."""

    domain = RetailApi
    system_prompt = system_prompt_with_policy(INTRO, HERE / "policy.md")
    task_generator = staticmethod(generate_task)
    eval_split = HERE / "eval.jsonl"
    atomic_calls = False  # its tools check every rule before they write (fuzz_step.py verifies it)
    sync_tools_inline = True  # its tools only compute on the state model: no worker thread on an event loop
