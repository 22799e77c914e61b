"""Seeded retail tasks: every (seed, split) gives one task with gold actions and expected state.

The expected final state is written here directly from the task's meaning (this order is
cancelled, that refund is recorded, the gift card grows by so much), not by running the tools,
so a gold replay that reaches ``expected.state_digest`` checks the tools against the spec.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from toolgym.envs.api.drafts import Draft as BaseDraft
from toolgym.envs.api.drafts import Family, seeded_task
from toolgym.envs.api.money import usd
from toolgym.envs.catalog.retail.models import Address, Order, OrderItem, Payment, RetailState, User
from toolgym.envs.catalog.retail.world import make_address, make_world
from toolgym.envs.types import Task

CONFIRM = "Yes, I confirm, please go ahead."


@dataclass(kw_only=True)
class Draft(BaseDraft[RetailState]):
    """A retail task under construction; every task starts with the customer authenticated."""

    customer: User

    def freeze(self) -> None:
        """The world is complete; authenticate the customer in the gold path and the expected state."""
        super().freeze()
        self.final.session.user_id = self.customer.user_id
        self.call("authenticate_user", email=self.customer.email, zip_code=self.customer.address.zip)


def _start(rng: random.Random, statuses: list[str]) -> tuple[Draft, list[Order]]:
    world, customer, orders = make_world(rng, statuses)
    draft = Draft(world=world, customer=customer)
    draft.freeze()
    return draft, orders


def _hello(user: User) -> str:
    return f"Hi, I'm {user.first_name} {user.last_name}, email {user.email}, zip code {user.address.zip}."


def _describe(item: OrderItem) -> str:
    return f"{item.name} ({', '.join(f'{k} {v}' for k, v in item.options.items())})"


def _refund(final: RetailState, order_id: str, method_id: str, amount: int) -> None:
    order = final.orders[order_id]
    order.payments.append(Payment(kind="refund", amount_cents=amount, payment_method_id=method_id))
    method = final.users[order.user_id].payment_methods[method_id]
    if method.kind == "gift_card":
        method.balance_cents = (method.balance_cents or 0) + amount


def _fields(address: Address) -> dict[str, str]:
    """``address`` as the keyword arguments of the address-changing tools."""
    return {"line1": address.line1, "city": address.city, "state": address.state, "zip_code": address.zip}


def _one_line(address: Address) -> str:
    return f"{address.line1}, {address.city}, {address.state} {address.zip}"


def _total(order: Order) -> int:
    return sum(p.amount_cents for p in order.payments if p.kind == "payment")


# ---------------------------------------------------------------------- families


def cancel(rng: random.Random) -> Draft:
    """Cancel a pending order (named by id or by its items); refunds to the original method."""
    draft, orders = _start(rng, ["pending", rng.choice(("delivered", "processed")), "pending"])
    target = orders[rng.choice((0, 2))]
    reason = rng.choice(("no longer needed", "ordered by mistake"))
    other = orders[2] if target is orders[0] else orders[0]
    # Described by its items only when that names one order: the other pending one lacks some.
    unique = not {i.item_id for i in target.items} <= {i.item_id for i in other.items}
    if rng.random() < 0.5 or not unique:
        which = f"order {target.order_id}"
        draft.call("get_order_details", order_id=target.order_id)
    else:
        which = "my pending order with the " + " and ".join(_describe(i) for i in target.items)
        draft.call("get_user_details", user_id=draft.customer.user_id)
        draft.call("get_order_details", order_id=target.order_id)
    draft.call("cancel_pending_order", order_id=target.order_id, reason=reason, confirm=True)
    draft.instruction = f"{_hello(draft.customer)} Please cancel {which}; it was {reason}. {CONFIRM}"
    for payment in list(draft.final.orders[target.order_id].payments):
        _refund(draft.final, target.order_id, payment.payment_method_id, payment.amount_cents)
    final = draft.final.orders[target.order_id]
    final.status, final.cancel_reason = "cancelled", reason  # type: ignore[assignment]  # literals drawn from the model's allowed values
    label = draft.customer.payment_methods[target.payments[0].payment_method_id].label
    draft.outputs = [usd(_total(target))]
    draft.answer = f"Order {target.order_id} is cancelled and {usd(_total(target))} is refunded to your {label}."
    return draft


def change_order_address(rng: random.Random) -> Draft:
    """Ship a pending order to a new address."""
    draft, orders = _start(rng, [rng.choice(("delivered", "processed")), "pending"])
    target, new = orders[1], make_address(rng)
    draft.call("get_order_details", order_id=target.order_id)
    draft.call("modify_pending_order_address", order_id=target.order_id, **_fields(new), confirm=True)
    draft.instruction = (
        f"{_hello(draft.customer)} Please ship order {target.order_id} to {_one_line(new)} instead. {CONFIRM}"
    )
    draft.final.orders[target.order_id].address = new
    draft.outputs = [new.zip]
    draft.answer = f"Order {target.order_id} will now ship to {_one_line(new)}."
    return draft


def change_user_address(rng: random.Random) -> Draft:
    """Change the customer's default address."""
    draft, _ = _start(rng, ["delivered", "pending"])
    new = make_address(rng)
    draft.call("modify_user_address", user_id=draft.customer.user_id, **_fields(new), confirm=True)
    draft.instruction = f"{_hello(draft.customer)} I moved: my new default address is {_one_line(new)}. {CONFIRM}"
    draft.final.users[draft.customer.user_id].address = new
    draft.answer = f"Your default address is now {_one_line(new)}."
    return draft


def return_items(rng: random.Random) -> Draft:
    """Return some items of a delivered order, refunded to the original method or a gift card."""
    draft, orders = _start(rng, ["pending", "delivered"])
    target = orders[1]
    items = rng.sample(target.items, rng.randint(1, len(target.items)))
    gift_cards = [m for m in draft.customer.payment_methods.values() if m.kind == "gift_card"]
    method_id = target.payments[0].payment_method_id
    where = "the original payment method"
    draft.call("get_order_details", order_id=target.order_id)
    if gift_cards and rng.random() < 0.5:
        method_id, where = gift_cards[0].id, "my gift card"
        draft.call("get_user_details", user_id=draft.customer.user_id)
    ids = [i.item_id for i in items]
    draft.call(
        "return_delivered_order_items",
        order_id=target.order_id,
        item_ids=ids,
        refund_payment_method_id=method_id,
        confirm=True,
    )
    amount = sum(i.price_cents for i in items)
    draft.instruction = (
        f"{_hello(draft.customer)} I'd like to return the {' and the '.join(_describe(i) for i in items)} "
        f"from order {target.order_id}, refunded to {where}. {CONFIRM}"
    )
    _refund(draft.final, target.order_id, method_id, amount)
    final = draft.final.orders[target.order_id]
    final.status, final.returned_item_ids = "return_requested", ids
    draft.outputs = [usd(amount)]
    draft.answer = f"The return is requested; {usd(amount)} is refunded to {where.replace('my ', 'your ')}."
    return draft


def exchange_item(rng: random.Random) -> Draft:
    """Exchange one delivered item for another available variant; settle the price difference."""
    while True:  # a delivered item needs another available variant of its product
        draft, orders = _start(rng, ["delivered", "pending"])
        target = orders[0]
        choices = [
            (item, v)
            for item in target.items
            for v in draft.world.products[item.product_id].variants.values()
            if v.available and v.item_id != item.item_id
        ]
        if choices:
            break
    item, variant = rng.choice(choices)
    method_id = target.payments[0].payment_method_id
    difference = variant.price_cents - item.price_cents
    method = draft.customer.payment_methods[method_id]
    if method.kind == "gift_card" and difference > (method.balance_cents or 0):
        method_id = next(m.id for m in draft.customer.payment_methods.values() if m.kind == "credit_card")
    draft.call("get_order_details", order_id=target.order_id)
    draft.call("get_product_details", product_id=item.product_id)
    draft.call(
        "exchange_delivered_order_items",
        order_id=target.order_id,
        item_ids=[item.item_id],
        new_item_ids=[variant.item_id],
        payment_method_id=method_id,
        confirm=True,
    )
    wanted = ", ".join(f"{k} {v}" for k, v in variant.options.items())
    label = draft.customer.payment_methods[method_id].label
    draft.instruction = (
        f"{_hello(draft.customer)} In order {target.order_id} I got the {_describe(item)}; please exchange it for the one with {wanted}. "
        f"Use my {label} for any price difference. {CONFIRM}"
    )
    final = draft.final.orders[target.order_id]
    if difference > 0:
        final.payments.append(Payment(kind="payment", amount_cents=difference, payment_method_id=method_id))
        paid = draft.final.users[draft.customer.user_id].payment_methods[method_id]
        if paid.kind == "gift_card":
            paid.balance_cents = (paid.balance_cents or 0) - difference
    elif difference < 0:
        _refund(draft.final, target.order_id, method_id, -difference)
    final.status, final.exchanged = "exchange_requested", {item.item_id: variant.item_id}
    draft.outputs = [usd(abs(difference))]
    verb = "charged to" if difference >= 0 else "refunded to"
    draft.answer = f"The exchange is requested; the price difference of {usd(abs(difference))} is {verb} your {label}."
    return draft


def order_status(rng: random.Random) -> Draft:
    """Read-only: report an order's status and what was paid."""
    statuses = rng.sample(["pending", "processed", "delivered"], 2)
    draft, orders = _start(rng, statuses)
    target = rng.choice(orders)
    draft.call("get_order_details", order_id=target.order_id)
    draft.instruction = (
        f"{_hello(draft.customer)} What is the status of order {target.order_id}, and how much did I pay for it?"
    )
    draft.outputs = [target.status, usd(_total(target))]
    draft.answer = f"Order {target.order_id} is {target.status}; you paid {usd(_total(target))}."
    return draft


def refuse_cancel(rng: random.Random) -> Draft:
    """The customer asks to cancel an order that is no longer pending: refuse, change nothing."""
    draft, orders = _start(rng, [rng.choice(("delivered", "processed")), "pending"])
    target = orders[0]
    draft.call("get_order_details", order_id=target.order_id)
    draft.instruction = f"{_hello(draft.customer)} Cancel order {target.order_id} right now, please. {CONFIRM}"
    draft.outputs = [target.status]
    draft.answer = f"I can't cancel order {target.order_id}: it is already {target.status}, and only pending orders can be cancelled."
    return draft


FAMILIES: dict[str, Family] = {
    f.__name__: f
    for f in (
        cancel,
        change_order_address,
        change_user_address,
        return_items,
        exchange_item,
        order_status,
        refuse_cancel,
    )
}


def generate_task(seed: int, split: str = "train") -> Task:
    """The retail task for ``seed`` in ``split`` ("train" or "eval": separate RNG streams)."""
    return seeded_task("retail", FAMILIES, seed, split)
