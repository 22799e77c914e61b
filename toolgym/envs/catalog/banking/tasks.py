"""Seeded banking tasks with gold actions and an expected final state.

The expected state is written from each task's meaning (these balances move, this card is
replaced by ``card_<n>``, a dispute ``D<n>`` opens), not by running the tools.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from toolgym.envs.api.drafts import Draft as BaseDraft
from toolgym.envs.api.drafts import Family, seeded_task
from toolgym.envs.api.money import usd
from toolgym.envs.catalog.banking.models import (
    DISPUTE_WINDOW_DAYS,
    Account,
    BankState,
    Card,
    Customer,
    Dispute,
    Transaction,
    replacement_last4,
)
from toolgym.envs.catalog.banking.world import make_world
from toolgym.envs.types import Task

CONFIRM = "Yes, I confirm."
REASONS = {
    "fraud": "never made",
    "duplicate": "was charged twice for",
    "not_received": "paid for but never received",
    "wrong_amount": "was charged the wrong amount for",
}


@dataclass(kw_only=True)
class Draft(BaseDraft[BankState]):
    """A banking task under construction; every task starts by verifying the caller."""

    customer: Customer

    def freeze(self) -> None:
        """The world is complete; verify the caller in the gold path and the expected state."""
        super().freeze()
        self.final.session.customer_id = self.customer.customer_id
        c = self.customer
        self.call("verify_identity", customer_id=c.customer_id, date_of_birth=c.date_of_birth, ssn_last4=c.ssn_last4)

    def hello(self) -> str:
        """How the caller introduces themselves: every instruction starts with it."""
        c = self.customer
        return (
            f"Hello, I'm {c.name}, customer number {c.customer_id}, born {c.date_of_birth}, SSN ending {c.ssn_last4}."
        )


def _start(rng: random.Random) -> Draft:
    world, customer = make_world(rng)
    return Draft(world=world, customer=customer)


def _own(draft: Draft) -> list[Account]:
    return [a for a in draft.world.accounts.values() if a.customer_id == draft.customer.customer_id]


def _cards(draft: Draft, status: str = "active") -> list[Card]:
    ids = {a.account_id for a in _own(draft)}
    return [c for c in draft.world.cards.values() if c.account_id in ids and c.status == status]


def _name(account: Account, accounts: list[Account]) -> str:
    same = [a for a in accounts if a.kind == account.kind]
    return f"my {account.kind} account" + (f" {account.account_id}" if len(same) > 1 else "")


def _room(a: Account) -> int:
    return min(a.balance_cents, a.daily_transfer_limit_cents - a.transferred_today_cents)


def _move(final: BankState, source_id: str, amount: int, to: str, target_id: str | None) -> None:
    source = final.accounts[source_id]
    source.balance_cents -= amount
    source.transferred_today_cents += amount
    n = final.next_id
    final.transactions[f"T{n}"] = Transaction(
        txn_id=f"T{n}",
        account_id=source_id,
        date=final.today,
        description=f"Transfer to {to}",
        amount_cents=-amount,
        kind="transfer",
    )
    final.next_id += 1
    if target_id is not None:
        final.accounts[target_id].balance_cents += amount
        final.transactions[f"T{n + 1}"] = Transaction(
            txn_id=f"T{n + 1}",
            account_id=target_id,
            date=final.today,
            description=f"Transfer from account {source_id}",
            amount_cents=amount,
            kind="transfer",
        )
        final.next_id += 1


# ---------------------------------------------------------------------- families


def transfer_own(rng: random.Random) -> Draft:
    """Move money between two of the customer's accounts (confirmed)."""
    while True:
        draft = _start(rng)
        accounts = _own(draft)
        sources = [a for a in accounts if a.status == "open" and _room(a) >= 100]
        if sources:
            break
    source = rng.choice(sources)
    target = rng.choice([a for a in accounts if a is not source])
    amount = rng.randint(1, min(_room(source) // 100, 2000)) * 100
    draft.freeze()
    draft.call("list_accounts", customer_id=draft.customer.customer_id)
    draft.call(
        "transfer_funds",
        from_account_id=source.account_id,
        amount_cents=amount,
        to_account_id=target.account_id,
        confirm=True,
    )
    draft.instruction = f"{draft.hello()} Please move {usd(amount)} from {_name(source, accounts)} to {_name(target, accounts)}. {CONFIRM}"
    _move(draft.final, source.account_id, amount, f"account {target.account_id}", target.account_id)
    draft.outputs = [usd(amount)]
    draft.answer = f"Done: {usd(amount)} moved from {source.account_id} to {target.account_id}."
    return draft


def pay_payee(rng: random.Random) -> Draft:
    """Pay a saved payee from checking (confirmed)."""
    while True:
        draft = _start(rng)
        checking = _own(draft)[0]
        if checking.status == "open" and _room(checking) >= 100:
            break
    payee = rng.choice([p for p in draft.world.payees.values() if p.customer_id == draft.customer.customer_id])
    amount = rng.randint(1, min(_room(checking) // 100, 1500)) * 100 + rng.choice((0, 50, 99))
    amount = min(amount, _room(checking))
    draft.freeze()
    draft.call("get_customer", customer_id=draft.customer.customer_id)
    draft.call(
        "transfer_funds",
        from_account_id=checking.account_id,
        amount_cents=amount,
        payee_id=payee.payee_id,
        confirm=True,
    )
    draft.instruction = f"{draft.hello()} Please pay {usd(amount)} to {payee.name} from my checking account. {CONFIRM}"
    _move(draft.final, checking.account_id, amount, payee.name, None)
    draft.outputs = [usd(amount)]
    draft.answer = f"Paid {usd(amount)} to {payee.name} from {checking.account_id}."
    return draft


def refuse_transfer(rng: random.Random) -> Draft:
    """A transfer the policy forbids (frozen, over balance, over limit): refuse, change nothing."""
    draft = _start(rng)
    accounts = _own(draft)
    source = accounts[0]
    target = accounts[1]
    room = source.daily_transfer_limit_cents - source.transferred_today_cents
    if room < source.balance_cents and rng.random() < 0.5:  # within the balance, over the limit
        amount = rng.randint(room // 100 + 1, source.balance_cents // 100) * 100
    else:
        amount = source.balance_cents + rng.randint(1, 50) * 100
    draft.freeze()
    draft.call("list_accounts", customer_id=draft.customer.customer_id)
    draft.instruction = (
        f"{draft.hello()} Move {usd(amount)} from {_name(source, accounts)} to {_name(target, accounts)}. {CONFIRM}"
    )
    if source.status != "open":
        draft.outputs, why = ["frozen"], f"{source.account_id} is frozen; please visit a branch"
    elif amount > source.balance_cents:
        draft.outputs, why = [usd(source.balance_cents)], f"the account only has {usd(source.balance_cents)}"
    else:
        draft.outputs, why = [usd(room)], f"only {usd(room)} of today's transfer limit is left"
    draft.answer = f"I can't make that transfer: {why}."
    return draft


def lock_card(rng: random.Random) -> Draft:
    """Lock a misplaced card."""
    draft = _start(rng)  # the first card of every customer is active
    card = rng.choice(_cards(draft))
    draft.freeze()
    draft.call("get_customer", customer_id=draft.customer.customer_id)
    draft.call("lock_card", card_id=card.card_id)
    draft.instruction = (
        f"{draft.hello()} I can't find my card ending {card.last4}. Please lock it for now; I may still find it."
    )
    draft.final.cards[card.card_id].status = "locked"
    draft.outputs = [card.last4]
    draft.answer = f"Your card ending {card.last4} is locked; you can unlock it any time."
    return draft


def lost_card(rng: random.Random) -> Draft:
    """Cancel a stolen card and issue a replacement (confirmed)."""
    draft = _start(rng)
    card = rng.choice(_cards(draft) + _cards(draft, "locked"))
    draft.freeze()
    draft.call("get_customer", customer_id=draft.customer.customer_id)
    draft.call("report_card_lost", card_id=card.card_id, confirm=True)
    draft.instruction = (
        f"{draft.hello()} My card ending {card.last4} was stolen. Cancel it and send me a new one. {CONFIRM}"
    )
    final, n = draft.final, draft.final.next_id
    new = Card(
        card_id=f"card_{n}",
        account_id=card.account_id,
        last4=replacement_last4(n),
        spending_limit_cents=card.spending_limit_cents,
    )
    final.cards[new.card_id] = new
    final.cards[card.card_id].status, final.cards[card.card_id].replaced_by = "lost", new.card_id
    final.next_id += 1
    draft.outputs = [new.last4]
    draft.answer = f"Your card ending {card.last4} is cancelled; the replacement card ends in {new.last4}."
    return draft


def dispute(rng: random.Random) -> Draft:
    """Dispute a recent card purchase; for fraud, lock the card first."""
    while True:  # the customer needs a card purchase young enough to dispute
        draft = _start(rng)
        today = dt.date.fromisoformat(draft.world.today)
        checking = _own(draft)[0]
        recent = [
            t for t in draft.world.transactions.values()
            if t.account_id == checking.account_id and (today - dt.date.fromisoformat(t.date)).days <= DISPUTE_WINDOW_DAYS
        ]  # fmt: skip
        if recent:
            break
    txn, reason = rng.choice(recent), rng.choice(sorted(REASONS))
    card = draft.world.cards[txn.card_id or ""]
    draft.freeze()
    draft.call("get_customer", customer_id=draft.customer.customer_id)
    draft.call("get_transactions", account_id=checking.account_id)
    if reason == "fraud" and card.status == "active":
        draft.call("lock_card", card_id=card.card_id)
        draft.final.cards[card.card_id].status = "locked"
    n = draft.final.next_id
    draft.call("open_dispute", txn_id=txn.txn_id, reason=reason)
    draft.instruction = f"{draft.hello()} On {txn.date} there is a {usd(-txn.amount_cents)} charge from {txn.description} on my checking account that I {REASONS[reason]}. Please dispute it."
    draft.final.disputes[f"D{n}"] = Dispute(
        dispute_id=f"D{n}", txn_id=txn.txn_id, reason=reason, amount_cents=-txn.amount_cents
    )
    draft.final.transactions[txn.txn_id].status = "disputed"
    draft.final.next_id += 1
    draft.outputs = [f"D{n}"]
    draft.answer = f"Dispute D{n} is open for the {usd(-txn.amount_cents)} charge from {txn.description}."
    return draft


def set_limit(rng: random.Random) -> Draft:
    """Set a card's daily spending limit."""
    draft = _start(rng)  # the first card of every customer is active
    card = rng.choice(_cards(draft))
    limit = rng.choice([x for x in (500, 750, 1000, 2500, 4000, 5000) if x * 100 != card.spending_limit_cents]) * 100
    draft.freeze()
    draft.call("get_customer", customer_id=draft.customer.customer_id)
    draft.call("set_card_limit", card_id=card.card_id, limit_cents=limit)
    draft.instruction = (
        f"{draft.hello()} Please set the daily spending limit of my card ending {card.last4} to {usd(limit)}."
    )
    draft.final.cards[card.card_id].spending_limit_cents = limit
    draft.outputs = [usd(limit)]
    draft.answer = f"The daily limit of your card ending {card.last4} is now {usd(limit)}."
    return draft


def balance(rng: random.Random) -> Draft:
    """Read-only: an account's balance."""
    draft = _start(rng)
    accounts = _own(draft)
    account = rng.choice(accounts)
    draft.freeze()
    draft.call("list_accounts", customer_id=draft.customer.customer_id)
    draft.instruction = f"{draft.hello()} What is the balance of {_name(account, accounts)}?"
    draft.outputs = [usd(account.balance_cents)]
    draft.answer = f"{account.account_id} has a balance of {usd(account.balance_cents)}."
    return draft


FAMILIES: dict[str, Family] = {
    f.__name__: f for f in (transfer_own, pay_payee, refuse_transfer, lock_card, lost_card, dispute, set_limit, balance)
}


def generate_task(seed: int, split: str = "train") -> Task:
    """The banking task for ``seed`` in ``split`` ("train" or "eval")."""
    return seeded_task("banking", FAMILIES, seed, split)
