"""The banking world: customers, their accounts, cards, payees, transactions and disputes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolgym.envs.api.domain import StateModel

DisputeReason = Literal["fraud", "duplicate", "not_received", "wrong_amount"]
MAX_CARD_LIMIT_CENTS = 500_000
"""Policy ceiling of a card's daily spending limit ($5,000.00)."""
DISPUTE_WINDOW_DAYS = 60


class Customer(StateModel):
    """A bank customer and the facts used to verify them."""

    customer_id: str
    name: str
    date_of_birth: str
    ssn_last4: str


class Account(StateModel):
    """A deposit account; balances in cents."""

    account_id: str
    customer_id: str
    kind: Literal["checking", "savings"]
    balance_cents: int
    status: Literal["open", "frozen"] = "open"
    daily_transfer_limit_cents: int
    transferred_today_cents: int = 0


class Card(StateModel):
    """A debit card drawing on an account."""

    card_id: str
    account_id: str
    last4: str
    status: Literal["active", "locked", "lost"] = "active"
    spending_limit_cents: int
    replaced_by: str | None = None


class Payee(StateModel):
    """Someone outside the bank a customer pays."""

    payee_id: str
    customer_id: str
    name: str
    account_last4: str


class Transaction(StateModel):
    """Money in (positive) or out (negative) of an account."""

    txn_id: str
    account_id: str
    date: str
    description: str
    amount_cents: int
    kind: Literal["card", "transfer", "deposit"]
    card_id: str | None = None
    status: Literal["posted", "disputed"] = "posted"


class Dispute(StateModel):
    """A customer's challenge of a card transaction."""

    dispute_id: str
    txn_id: str
    reason: DisputeReason
    amount_cents: int
    status: Literal["open"] = "open"


class Session(StateModel):
    """Who the agent has verified in this conversation."""

    customer_id: str | None = None


class BankState(StateModel):
    """The bank as one task sees it."""

    today: str
    customers: dict[str, Customer]
    accounts: dict[str, Account]
    cards: dict[str, Card]
    payees: dict[str, Payee]
    transactions: dict[str, Transaction]
    disputes: dict[str, Dispute] = Field(default_factory=dict)
    session: Session = Field(default_factory=Session)
    next_id: int = 5000
    """Number used in the id of the next transaction, card or dispute."""


def replacement_last4(number: int) -> str:
    """Last four digits of the replacement card issued with id number ``number`` (deterministic)."""
    return f"{(number * 7919 + 1234) % 10000:04d}"
