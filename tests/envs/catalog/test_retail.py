"""Retail policy enforcement: identity, confirmation, order status, refunds and exchanges."""

from __future__ import annotations

from api_domains import call, env_with, make, output, refused

from toolgym.envs.api.money import usd

ENV = "toolgym/retail-v0"


def test_nothing_before_authentication():
    env, task = env_with(ENV, "cancel", steps=0)
    order_id = task.gold_actions[-1].arguments["order_id"]
    assert refused(call(env, "get_order_details", order_id=order_id), "identity not verified")
    user = env.api.state.users[env.api.state.orders[order_id].user_id]
    assert refused(call(env, "authenticate_user", email=user.email, zip_code="00000"), "zip code does not match")
    assert env.api.state.session.user_id is None
    assert output(call(env, "list_products"))  # the catalogue is public


def test_cancel_needs_confirmation_then_refunds():
    env, task = env_with(ENV, "cancel")
    args = dict(task.gold_actions[-1].arguments)
    before = env.state_digest()
    assert refused(call(env, "cancel_pending_order", **{**args, "confirm": False}), "explicit confirmation")
    assert env.state_digest() == before  # a refused write changes nothing
    order = env.api.state.orders[args["order_id"]]
    paid = order.payments[0]
    method = env.api.state.users[order.user_id].payment_methods[paid.payment_method_id]
    balance = method.balance_cents
    result = output(call(env, "cancel_pending_order", **args))
    assert result == {"order_id": args["order_id"], "status": "cancelled", "refunded_cents": paid.amount_cents}
    assert order.payments[-1].kind == "refund" and order.payments[-1].amount_cents == paid.amount_cents
    if method.kind == "gift_card":
        assert method.balance_cents == balance + paid.amount_cents
    assert refused(call(env, "cancel_pending_order", **args), "only pending orders")


def test_delivered_orders_cannot_be_cancelled_but_can_be_returned():
    env, task = env_with(ENV, "refuse_cancel")
    order_id = task.gold_actions[-1].arguments["order_id"]
    status = env.api.state.orders[order_id].status
    message = call(env, "cancel_pending_order", order_id=order_id, reason="no longer needed", confirm=True)
    assert refused(message, f"is {status}; only pending orders can be cancelled")
    if status == "delivered":
        assert "returned instead" in message.content


def test_other_customers_orders_are_invisible():
    env, _ = env_with(ENV, "order_status")
    me = env.api.state.session.user_id
    foreign = next(o for o in env.api.state.orders.values() if o.user_id != me)
    assert refused(call(env, "get_order_details", order_id=foreign.order_id), "has no order")
    assert refused(call(env, "get_user_details", user_id=foreign.user_id), "only access the authenticated customer")
    other = env.api.state.users[foreign.user_id]
    assert refused(
        call(env, "authenticate_user", email=other.email, zip_code=other.address.zip), "one customer per conversation"
    )


def test_refunds_go_only_to_original_method_or_gift_card():
    env, task = env_with(ENV, "return_items")
    args = dict(task.gold_actions[-1].arguments)
    order = env.api.state.orders[args["order_id"]]
    user = env.api.state.users[order.user_id]
    original = order.payments[0].payment_method_id
    others = [m.id for m in user.payment_methods.values() if m.id != original and m.kind != "gift_card"]
    for method_id in others + ["paypal_0000000"]:
        assert refused(
            call(env, "return_delivered_order_items", **{**args, "refund_payment_method_id": method_id}),
            "refunds go to",
        )
    assert refused(call(env, "return_delivered_order_items", **{**args, "item_ids": ["9999999999"]}), "has no item")
    assert refused(call(env, "return_delivered_order_items", **{**args, "item_ids": []}), "at least one item")


def test_exchanges_stay_within_the_product_and_available_variants():
    env, task = env_with(ENV, "exchange_item", steps=3)
    args = dict(task.gold_actions[-1].arguments)
    old_id = args["item_ids"][0]
    order = env.api.state.orders[args["order_id"]]
    product = env.api.state.products[next(i.product_id for i in order.items if i.item_id == old_id)]
    foreign = next(v.item_id for p in env.api.state.products.values() if p is not product for v in p.variants.values())
    assert refused(
        call(env, "exchange_delivered_order_items", **{**args, "new_item_ids": [foreign]}),
        "exchanges stay within the same product",
    )
    assert refused(call(env, "exchange_delivered_order_items", **{**args, "new_item_ids": [old_id]}), "the same item")
    unavailable = [v.item_id for v in product.variants.values() if not v.available]
    for item_id in unavailable:
        assert refused(
            call(env, "exchange_delivered_order_items", **{**args, "new_item_ids": [item_id]}), "not available"
        )
    new_price = product.variants[args["new_item_ids"][0]].price_cents
    old_price = next(i.price_cents for i in order.items if i.item_id == old_id)
    result = output(call(env, "exchange_delivered_order_items", **args))
    assert result["price_difference_cents"] == new_price - old_price
    assert usd(abs(new_price - old_price)) in task.gold_answer


def test_addresses_are_validated():
    env, task = env_with(ENV, "change_user_address", steps=1)
    args = dict(task.gold_actions[-1].arguments)
    assert refused(call(env, "modify_user_address", **{**args, "zip_code": "1234"}), "five digits")
    assert refused(call(env, "modify_user_address", **{**args, "state": "Texas"}), "two-letter code")
    assert call(env, "modify_user_address", **{**args, "city": 5}).error == "invalid_arguments"


def test_tools_cover_reads_and_writes():
    env = make(ENV)
    obs, _ = env.reset(seed=0)
    names = {t.name for t in obs.tools}
    assert {"get_order_details", "list_products", "cancel_pending_order", "exchange_delivered_order_items"} <= names
    assert len(names) >= 8
