"""The bank's support API. Tools enforce the rules of ``policy.md``.

Writes check everything before changing anything; reads return fresh JSON data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from toolgym.envs.api.barrier import reading
from toolgym.envs.api.domain import Domain, NotFound, PolicyViolation
from toolgym.envs.api.money import usd
from toolgym.envs.catalog.banking.models import (
    DISPUTE_WINDOW_DAYS,
    MAX_CARD_LIMIT_CENTS,
    Account,
    BankState,
    Card,
    Customer,
    Dispute,
    DisputeReason,
    Transaction,
    replacement_last4,
)  # fmt: skip
from toolgym.envs.tools import tool


class BankingApi(Domain[BankState]):
    """Accounts, transfers, cards and disputes of a retail bank, behind a policy."""

    state_model = BankState

    # ------------------------------------------------------------------ identity and reads

    @tool
    def verify_identity(self, customer_id: str, date_of_birth: str, ssn_last4: str) -> dict[str, Any]:
        """Verify the caller: customer id, date of birth and the last four digits of their SSN.

        Args:
            customer_id: Customer number such as "C123456".
            date_of_birth: "YYYY-MM-DD".
            ssn_last4: Last four digits of the social security number.
        """
        with reading():  # only the session is written
            customer = self.state.customers.get(customer_id)
        if (
            customer is None
            or customer.date_of_birth != date_of_birth.strip()
            or customer.ssn_last4 != ssn_last4.strip()
        ):
            raise PolicyViolation(
                "the details do not match our records; ask the caller to check them (do not say which one is wrong)"
            )
        current = self.state.session.customer_id
        if current is not None and current != customer_id:
            raise PolicyViolation(
                f"this conversation is already verified as {current}; serve one customer per conversation"
            )
        self.state.session.customer_id = customer_id
        return {"customer_id": customer_id, "name": customer.name, "verified": True}

    @tool(read_only=True)
    def get_customer(self, customer_id: str) -> dict[str, Any]:
        """The verified customer's profile with their account ids, cards (last 4 digits) and payees.

        Args:
            customer_id: The verified customer's id.
        """
        customer = self._customer(customer_id)
        accounts = [a.account_id for a in self._accounts()]
        return {
            "customer_id": customer.customer_id,
            "name": customer.name,
            "accounts": accounts,
            "cards": [
                {"card_id": c.card_id, "last4": c.last4, "status": c.status, "account_id": c.account_id}
                for c in self.state.cards.values()
                if c.account_id in accounts
            ],
            "payees": [
                {"payee_id": p.payee_id, "name": p.name}
                for p in self.state.payees.values()
                if p.customer_id == customer_id
            ],
        }

    @tool(read_only=True)
    def list_accounts(self, customer_id: str) -> list[dict[str, Any]]:
        """The verified customer's accounts with balances, status and transfer limits.

        Args:
            customer_id: The verified customer's id.
        """
        self._customer(customer_id)
        return [a.model_dump(mode="json") for a in self._accounts()]

    @tool(read_only=True)
    def get_card(self, card_id: str) -> dict[str, Any]:
        """One of the verified customer's cards: status, spending limit, account.

        Args:
            card_id: The card's id, e.g. "card_12345".
        """
        return self._card(card_id).model_dump(mode="json")

    @tool(read_only=True)
    def get_transactions(self, account_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Recent transactions of one of the verified customer's accounts, newest first.

        Args:
            account_id: The account.
            limit: How many to return (1-50).
        """
        account = self._account(account_id)
        if not 1 <= limit <= 50:
            raise ValueError(f"limit must be between 1 and 50, got {limit}")
        txns = sorted(
            (t for t in self.state.transactions.values() if t.account_id == account.account_id),
            key=lambda t: (t.date, t.txn_id),
            reverse=True,
        )
        return [t.model_dump(mode="json") for t in txns[:limit]]

    # ------------------------------------------------------------------ money

    @tool
    def transfer_funds(
        self,
        from_account_id: str,
        amount_cents: int,
        to_account_id: str | None = None,
        payee_id: str | None = None,
        confirm: bool = False,
    ) -> dict[str, Any]:
        """Move money from one of the customer's accounts to another of theirs or to a saved payee.

        Args:
            from_account_id: The account the money leaves.
            amount_cents: Amount in cents (positive), e.g. 12550 for $125.50.
            to_account_id: Another account of the same customer (give this or payee_id).
            payee_id: A saved payee of the customer (give this or to_account_id).
            confirm: True only after the customer explicitly agreed to this transfer.
        """
        source = self._account(from_account_id)
        if (to_account_id is None) == (payee_id is None):
            raise ValueError("give exactly one of to_account_id and payee_id")
        target = self._account(to_account_id) if to_account_id is not None else None
        with reading():  # payees are only read
            payee = self.state.payees.get(payee_id or "")
        if target is None and (payee is None or payee.customer_id != source.customer_id):
            raise NotFound(f"no saved payee {payee_id!r} for this customer; get_customer lists their payees")
        if target is not None and target.account_id == source.account_id:
            raise ValueError("from_account_id and to_account_id must differ")
        self._check_transfer(source, amount_cents)
        if not confirm:
            raise PolicyViolation(
                f"a transfer of {usd(amount_cents)} needs the customer's explicit confirmation; ask, then call again with confirm=true"
            )
        name = f"account {target.account_id}" if target is not None else payee.name  # type: ignore[union-attr]  # payee is set whenever target is None (checked above)
        source.balance_cents -= amount_cents
        source.transferred_today_cents += amount_cents
        out = self._record(source.account_id, f"Transfer to {name}", -amount_cents)
        if target is not None:
            target.balance_cents += amount_cents
            self._record(target.account_id, f"Transfer from account {source.account_id}", amount_cents)
        return {"txn_id": out, "amount_cents": amount_cents, "from_balance_cents": source.balance_cents}

    # ------------------------------------------------------------------ cards

    @tool
    def lock_card(self, card_id: str) -> dict[str, Any]:
        """Temporarily lock an active card (reversible with unlock_card).

        Args:
            card_id: The card to lock.
        """
        return self._switch_card(card_id, "active", "locked", "locked")

    @tool
    def unlock_card(self, card_id: str) -> dict[str, Any]:
        """Unlock a locked card.

        Args:
            card_id: The card to unlock.
        """
        return self._switch_card(card_id, "locked", "active", "unlocked")

    @tool
    def report_card_lost(self, card_id: str, confirm: bool = False) -> dict[str, Any]:
        """Cancel a lost or stolen card for good and issue a replacement on the same account.

        Args:
            card_id: The lost card.
            confirm: True only after the customer explicitly agreed to cancel the card.
        """
        card = self._card(card_id)
        if card.status == "lost":
            raise PolicyViolation(f"card {card_id} is already reported lost (replacement {card.replaced_by})")
        if not confirm:
            raise PolicyViolation(
                "cancelling a card cannot be undone; get the customer's explicit confirmation, then call again with confirm=true"
            )
        number = self._take_id()
        new = Card(
            card_id=f"card_{number}",
            account_id=card.account_id,
            last4=replacement_last4(number),
            spending_limit_cents=card.spending_limit_cents,
        )
        self.state.cards[new.card_id] = new
        card.status, card.replaced_by = "lost", new.card_id
        return {
            "card_id": card_id,
            "status": "lost",
            "replacement_card_id": new.card_id,
            "replacement_last4": new.last4,
        }

    @tool
    def set_card_limit(self, card_id: str, limit_cents: int) -> dict[str, Any]:
        """Set an active card's daily spending limit.

        Args:
            card_id: The card.
            limit_cents: New limit in cents, from 1 up to 500000 ($5,000.00).
        """
        card = self._card(card_id)
        if card.status != "active":
            raise PolicyViolation(f"card {card_id} is {card.status}; limits can be changed only on active cards")
        if not 0 < limit_cents <= MAX_CARD_LIMIT_CENTS:
            raise PolicyViolation(
                f"card limits go from $0.01 to {usd(MAX_CARD_LIMIT_CENTS)}; {usd(limit_cents)} is not allowed"
            )
        card.spending_limit_cents = limit_cents
        return {"card_id": card_id, "spending_limit_cents": limit_cents}

    @tool
    def open_dispute(self, txn_id: str, reason: DisputeReason) -> dict[str, Any]:
        """Dispute a posted card purchase from the last 60 days.

        Args:
            txn_id: The transaction.
            reason: "fraud", "duplicate", "not_received" or "wrong_amount".
        """
        with reading():  # the owner's id is all it needs from the account
            txn = self.state.transactions.get(txn_id)
            owner = None if txn is None else self.state.accounts[txn.account_id].customer_id
        if txn is None or owner != self._verified():
            raise NotFound(f"no transaction {txn_id!r} on the customer's accounts; get_transactions lists them")
        if txn.kind != "card" or txn.amount_cents >= 0:
            raise PolicyViolation("only card purchases can be disputed")
        if txn.status != "posted":
            raise PolicyViolation(f"transaction {txn_id} is already disputed")
        age = (dt.date.fromisoformat(self.state.today) - dt.date.fromisoformat(txn.date)).days
        if age > DISPUTE_WINDOW_DAYS:
            raise PolicyViolation(
                f"the purchase is {age} days old; disputes are accepted within {DISPUTE_WINDOW_DAYS} days"
            )
        with reading():  # the card is only read
            card = self.state.cards.get(txn.card_id or "")
        if reason == "fraud" and card is not None and card.status == "active":
            raise PolicyViolation(
                f"for a fraud dispute, first lock card {card.card_id} (or report it lost) so it cannot be used again"
            )
        dispute = Dispute(
            dispute_id=f"D{self._take_id()}", txn_id=txn_id, reason=reason, amount_cents=-txn.amount_cents
        )
        self.state.disputes[dispute.dispute_id] = dispute
        self.state.transactions[txn_id].status = "disputed"  # a private copy: the one read above is shared
        return dispute.model_dump(mode="json")

    # ------------------------------------------------------------------ helpers (not tools)

    def _verified(self) -> str:
        current = self.state.session.customer_id
        if current is None:
            raise PolicyViolation(
                "identity not verified: call verify_identity with the customer id, date of birth and SSN last 4 first"
            )
        return current

    def _customer(self, customer_id: str) -> Customer:
        current = self._verified()
        if customer_id != current:
            raise PolicyViolation(f"you may only access the verified customer ({current}), not {customer_id!r}")
        return self.state.customers[current]

    def _accounts(self) -> list[Account]:
        current = self._verified()
        return [a for a in self.state.accounts.values() if a.customer_id == current]

    def _account(self, account_id: str) -> Account:
        account = self.state.accounts.get(account_id)
        if account is None or account.customer_id != self._verified():
            raise NotFound(f"the customer has no account {account_id!r}; list_accounts shows theirs")
        return account

    def _card(self, card_id: str) -> Card:
        card = self.state.cards.get(card_id)
        with reading():  # the owner's id is all it needs from the account
            owner = None if card is None else self.state.accounts[card.account_id].customer_id
        if card is None or owner != self._verified():
            raise NotFound(f"the customer has no card {card_id!r}; get_customer lists their cards")
        return card

    def _switch_card(
        self, card_id: str, need: Literal["active", "locked"], to: Literal["active", "locked"], done: str
    ) -> dict[str, Any]:
        """Move a card from status ``need`` to ``to`` (lock and unlock are each other's inverse)."""
        card = self._card(card_id)
        if card.status != need:
            raise PolicyViolation(f"card {card_id} is {card.status}; only {need} cards can be {done}")
        card.status = to
        return {"card_id": card_id, "status": card.status}

    @staticmethod
    def _check_transfer(source: Account, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"amount_cents must be positive, got {amount}")
        if source.status != "open":
            raise PolicyViolation(
                f"account {source.account_id} is {source.status}; no money can leave it (the customer must visit a branch)"
            )
        if amount > source.balance_cents:
            raise PolicyViolation(
                f"insufficient funds: {source.account_id} has {usd(source.balance_cents)}, the transfer is {usd(amount)}"
            )
        room = source.daily_transfer_limit_cents - source.transferred_today_cents
        if amount > room:
            raise PolicyViolation(
                f"over the daily transfer limit: {usd(room)} of {usd(source.daily_transfer_limit_cents)} is left today"
            )

    def _take_id(self) -> int:
        self.state.next_id += 1
        return self.state.next_id - 1

    def _record(self, account_id: str, description: str, amount: int) -> str:
        txn = Transaction(
            txn_id=f"T{self._take_id()}",
            account_id=account_id,
            date=self.state.today,
            description=description,
            amount_cents=amount,
            kind="transfer",
        )
        self.state.transactions[txn.txn_id] = txn
        return txn.txn_id
