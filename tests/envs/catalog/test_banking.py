"""Banking policy enforcement: verification, transfer rules, cards, limits and disputes."""

from __future__ import annotations

import datetime as dt

from api_domains import call, env_with, output, refused

from toolgym.envs.catalog.banking.models import replacement_last4

ENV = "toolgym/banking-v0"


def test_verification_first_and_without_hints():
    env, task = env_with(ENV, "balance", steps=0)
    args = dict(task.gold_actions[0].arguments)
    assert refused(call(env, "list_accounts", customer_id=args["customer_id"]), "identity not verified")
    wrong = call(env, "verify_identity", **{**args, "ssn_last4": "0000" if args["ssn_last4"] != "0000" else "1111"})
    assert refused(wrong, "do not match our records") and "ssn" not in wrong.content.split("records")[0].lower()
    assert env.api.state.session.customer_id is None
    output(call(env, "verify_identity", **args))
    other = next(c for c in env.api.state.customers if c != args["customer_id"])
    assert refused(call(env, "list_accounts", customer_id=other), "only access the verified customer")


def test_transfer_rules():
    env, task = env_with(ENV, "transfer_own")
    args = dict(task.gold_actions[-1].arguments)
    source = env.api.state.accounts[args["from_account_id"]]
    before = env.state_digest()
    assert refused(call(env, "transfer_funds", **{**args, "confirm": False}), "explicit confirmation")
    assert refused(
        call(env, "transfer_funds", **{**args, "amount_cents": source.balance_cents + 1}), "insufficient funds"
    )
    assert refused(call(env, "transfer_funds", **{**args, "amount_cents": -5}), "must be positive")
    assert refused(call(env, "transfer_funds", **{**args, "payee_id": "P00000"}), "exactly one of")
    assert env.state_digest() == before
    source.daily_transfer_limit_cents = source.transferred_today_cents + args["amount_cents"] - 1
    assert refused(call(env, "transfer_funds", **args), "daily transfer limit")
    source.daily_transfer_limit_cents += 1
    source.status = "frozen"
    assert refused(call(env, "transfer_funds", **args), "frozen")
    source.status = "open"
    balance = source.balance_cents
    output(call(env, "transfer_funds", **args))
    assert source.balance_cents == balance - args["amount_cents"]


def test_fraud_dispute_needs_the_card_locked_first():
    env, task = env_with(ENV, "dispute", steps=3)
    args = dict(task.gold_actions[-1].arguments)
    txn = env.api.state.transactions[args["txn_id"]]
    card = env.api.state.cards[txn.card_id]
    if card.status == "locked":  # put the card back to active to see the rule bite
        card.status = "active"
    assert refused(call(env, "open_dispute", txn_id=txn.txn_id, reason="fraud"), "first lock card")
    output(call(env, "lock_card", card_id=card.card_id))
    dispute = output(call(env, "open_dispute", txn_id=txn.txn_id, reason="fraud"))
    assert dispute["amount_cents"] == -txn.amount_cents and txn.status == "disputed"
    assert refused(call(env, "open_dispute", txn_id=txn.txn_id, reason="duplicate"), "already disputed")


def test_old_purchases_cannot_be_disputed():
    env, _ = env_with(ENV, "dispute", steps=1)
    state = env.api.state
    me = state.session.customer_id
    txn = next(t for t in state.transactions.values() if state.accounts[t.account_id].customer_id == me)
    txn.date = (dt.date.fromisoformat(state.today) - dt.timedelta(days=61)).isoformat()
    assert refused(call(env, "open_dispute", txn_id=txn.txn_id, reason="duplicate"), "within 60 days")


def test_lost_card_is_replaced_once():
    env, task = env_with(ENV, "lost_card", steps=2)
    card_id = task.gold_actions[-1].arguments["card_id"]
    assert refused(call(env, "report_card_lost", card_id=card_id), "cannot be undone")
    number = env.api.state.next_id
    result = output(call(env, "report_card_lost", card_id=card_id, confirm=True))
    assert result["replacement_card_id"] == f"card_{number}" and result["replacement_last4"] == replacement_last4(
        number
    )
    assert refused(call(env, "report_card_lost", card_id=card_id, confirm=True), "already reported lost")
    assert refused(call(env, "unlock_card", card_id=card_id), "only locked cards")


def test_card_limit_ceiling():
    env, task = env_with(ENV, "set_limit", steps=2)
    card_id = task.gold_actions[-1].arguments["card_id"]
    assert refused(call(env, "set_card_limit", card_id=card_id, limit_cents=500_001), "$5,000.00")
    assert refused(call(env, "set_card_limit", card_id=card_id, limit_cents=0), "not allowed")
    output(call(env, "lock_card", card_id=card_id))
    assert refused(call(env, "set_card_limit", card_id=card_id, limit_cents=1000), "only on active cards")
