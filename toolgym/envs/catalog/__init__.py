"""Shipped environments, one folder each. Registering them imports nothing heavy."""

from __future__ import annotations

from toolgym.envs.registry import register


def register_catalog() -> None:
    """Register every shipped environment (called by ``import toolgym``)."""
    register(
        "toolgym/unitconv-v0",
        "toolgym.envs.catalog.unitconv.env:UnitConvEnv",
        description="Unit conversion, arithmetic and a named memory; seeded tasks with gold solutions.",
    )
    register(
        "toolgym/retail-v0",
        "toolgym.envs.catalog.retail.env:RetailEnv",
        description="Online-shop customer service: orders, cancellations, returns, exchanges, addresses; policy enforced.",
    )
    register(
        "toolgym/calendar_email-v0",
        "toolgym.envs.catalog.calendar_email.env:CalendarEmailEnv",
        description="Executive assistant: meetings, invitations, free/busy, email drafts and sending; policy enforced.",
    )
    register(
        "toolgym/shell-v0",
        "toolgym.envs.catalog.shell.env:ShellTaskEnv",
        description="Real shell tasks in a sandbox (backend='bwrap'|'docker'|'local'): files, logs, CSV, git, permissions, archives, tests.",
    )
    register(
        "toolgym/banking-v0",
        "toolgym.envs.catalog.banking.env:BankingEnv",
        description="Bank support: accounts, transfers, payees, cards, limits and disputes; policy enforced.",
    )
