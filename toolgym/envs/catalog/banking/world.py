"""Seeded banking worlds: the calling customer and one other, with accounts, cards, payees and
about ten recent transactions."""

from __future__ import annotations

import datetime as dt
import random

from toolgym.envs.catalog.banking.models import Account, BankState, Card, Customer, Payee, Transaction

FIRST = (
    "Amara",
    "Boris",
    "Celia",
    "Dario",
    "Emeka",
    "Fatima",
    "Goran",
    "Helga",
    "Isaac",
    "Jana",
    "Kenji",
    "Leila",
    "Marco",
    "Nadia",
)
LAST = (
    "Adeyemi",
    "Horvat",
    "Lindgren",
    "Mazur",
    "Quispe",
    "Rahman",
    "Schulz",
    "Tanaka",
    "Varga",
    "Yamada",
    "Zielinski",
    "Costa",
)
MERCHANTS = (
    "FreshMart Grocery",
    "CityFuel",
    "StreamFlix",
    "Bolt Electronics",
    "Corner Cafe",
    "SkyJet Airlines",
    "PageTurner Books",
    "UrbanFit Gym",
    "QuickRide",
    "HomeGoods Depot",
)
PAYEES = (
    "Greenleaf Property Mgmt",
    "Metro Power & Light",
    "Dr. Alvarez Dental",
    "Riverside Daycare",
    "Summit Insurance",
)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _customer(rng: random.Random, taken: set[str]) -> Customer:
    while True:
        customer_id = f"C{_digits(rng, 6)}"
        if customer_id not in taken:
            break
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(50 * 365))
    return Customer(
        customer_id=customer_id,
        name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        date_of_birth=birth.isoformat(),
        ssn_last4=_digits(rng, 4),
    )


def _accounts(rng: random.Random, customer: Customer) -> list[Account]:
    kinds = ["checking", "savings"] + (["savings"] if rng.random() < 0.3 else [])
    return [
        Account(
            account_id=f"{kind[:3].upper()}-{_digits(rng, 6)}", customer_id=customer.customer_id, kind=kind,
            balance_cents=rng.randint(50, 9000) * 100 + rng.randint(0, 99),
            status="frozen" if rng.random() < 0.08 else "open",
            daily_transfer_limit_cents=rng.choice((1000, 2500, 5000)) * 100,
            transferred_today_cents=rng.choice((0, 0, 20000, 50000)),
        )
        for kind in kinds
    ]  # fmt: skip


def make_world(rng: random.Random) -> tuple[BankState, Customer]:
    """A world and the customer who calls."""
    today = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(365))
    taken: set[str] = set()
    customers = []
    for _ in range(2):
        customers.append(_customer(rng, taken))
        taken.add(customers[-1].customer_id)
    state = BankState(
        today=today.isoformat(),
        customers={c.customer_id: c for c in customers},
        accounts={},
        cards={},
        payees={},
        transactions={},
    )
    for customer in customers:
        accounts = _accounts(rng, customer)
        state.accounts.update({a.account_id: a for a in accounts})
        checking = accounts[0]
        cards = [
            Card(
                card_id=f"card_{_digits(rng, 5)}",
                account_id=checking.account_id,
                last4=_digits(rng, 4),
                spending_limit_cents=rng.choice((1000, 2000, 3000)) * 100,
            )
        ]
        if rng.random() < 0.5:
            cards.append(Card(card_id=f"card_{_digits(rng, 5)}", account_id=checking.account_id, last4=_digits(rng, 4), spending_limit_cents=150_000,
                              status=rng.choice(("active", "locked"))))  # fmt: skip
        state.cards.update({c.card_id: c for c in cards})
        for name in rng.sample(PAYEES, 2):
            payee_id = f"P{_digits(rng, 5)}"
            state.payees[payee_id] = Payee(
                payee_id=payee_id, customer_id=customer.customer_id, name=name, account_last4=_digits(rng, 4)
            )
        for _ in range(8 if customer is customers[0] else 2):
            card = rng.choice(cards)
            when = today - dt.timedelta(days=rng.randrange(1, 90))
            txn_id = f"T{_digits(rng, 8)}"
            state.transactions[txn_id] = Transaction(
                txn_id=txn_id, account_id=checking.account_id, date=when.isoformat(), description=rng.choice(MERCHANTS),
                amount_cents=-(rng.randint(3, 400) * 100 + rng.randint(0, 99)), kind="card", card_id=card.card_id,
            )  # fmt: skip
    return state, customers[0]
