"""Seeded retail worlds: a few users, a small catalogue and a handful of orders per task.

Worlds are compact on purpose (about 25 entities): a task needs only the customer, the
orders it talks about and some distractors, and 10,000 live environments must fit in memory.
"""

from __future__ import annotations

import itertools
import random

from toolgym.envs.catalog.retail.models import (
    Address,
    Order,
    OrderItem,
    Payment,
    PaymentMethod,
    Product,
    RetailState,
    User,
    Variant,
)

FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jin",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Omar",
    "Priya",
)
LAST = (
    "Silva",
    "Khan",
    "Moreau",
    "Patel",
    "Yilmaz",
    "Haddad",
    "Berg",
    "Sato",
    "Petrov",
    "Park",
    "Mensah",
    "Novak",
    "Ruiz",
    "Aziz",
)
CITIES = (
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Portland", "OR", "972"),
    ("Columbus", "OH", "432"),
    ("Raleigh", "NC", "276"),
    ("Tucson", "AZ", "857"),
)
STREETS = ("Oak St", "Maple Ave", "Cedar Ln", "Pine Rd", "Lakeview Dr", "Hillcrest Blvd", "Birch Way", "Elm Ct")

CATALOGUE: dict[str, dict[str, tuple[str, ...]]] = {
    "T-Shirt": {"color": ("red", "blue", "black", "white"), "size": ("S", "M", "L", "XL")},
    "Water Bottle": {"capacity": ("500ml", "750ml", "1000ml"), "color": ("green", "black", "white")},
    "Desk Lamp": {"color": ("black", "silver", "white"), "power": ("USB", "battery", "AC")},
    "Running Shoes": {"size": ("8", "9", "10", "11"), "color": ("grey", "blue", "black")},
    "Backpack": {"color": ("navy", "black", "olive"), "capacity": ("20L", "30L", "40L")},
    "Wireless Earbuds": {"color": ("white", "black"), "case": ("standard", "wireless charging")},
    "Coffee Maker": {"capacity": ("4 cups", "8 cups", "12 cups"), "color": ("steel", "black")},
    "Yoga Mat": {"thickness": ("4mm", "6mm", "8mm"), "color": ("purple", "teal", "black")},
}
BASE_PRICE = {
    "T-Shirt": 1900,
    "Water Bottle": 2400,
    "Desk Lamp": 4500,
    "Running Shoes": 8900,
    "Backpack": 6400,
    "Wireless Earbuds": 12900,
    "Coffee Maker": 7900,
    "Yoga Mat": 3200,
}
CARD_BRANDS = ("Visa", "Mastercard", "Amex")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def make_address(rng: random.Random) -> Address:
    city, state, zip_prefix = rng.choice(CITIES)
    return Address(
        line1=f"{rng.randint(10, 9999)} {rng.choice(STREETS)}", city=city, state=state, zip=zip_prefix + _digits(rng, 2)
    )


def _product(rng: random.Random, name: str) -> Product:
    options = CATALOGUE[name]
    combos = list(itertools.product(*options.values()))
    variants: dict[str, Variant] = {}
    for combo in rng.sample(combos, 3):
        item_id = _digits(rng, 10)
        price = BASE_PRICE[name] + rng.randint(-4, 6) * 100 + rng.choice((0, 49, 99))
        variants[item_id] = Variant(
            item_id=item_id,
            options=dict(zip(options, combo, strict=True)),
            price_cents=price,
            available=rng.random() < 0.85,
        )
    return Product(product_id=_digits(rng, 10), name=name, variants=variants)


def _payment_methods(rng: random.Random) -> dict[str, PaymentMethod]:
    methods = [
        PaymentMethod(
            id=f"credit_card_{_digits(rng, 7)}",
            kind="credit_card",
            label=f"{rng.choice(CARD_BRANDS)} ending {_digits(rng, 4)}",
        )
    ]
    if rng.random() < 0.6:
        methods.append(
            PaymentMethod(
                id=f"gift_card_{_digits(rng, 7)}",
                kind="gift_card",
                label="Gift card",
                balance_cents=rng.randint(20, 300) * 100,
            )
        )
    if rng.random() < 0.4:
        methods.append(PaymentMethod(id=f"paypal_{_digits(rng, 7)}", kind="paypal", label="PayPal"))
    return {m.id: m for m in methods}


def _user(rng: random.Random, taken: set[str]) -> User:
    while True:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user_id = f"{first}_{last}_{_digits(rng, 4)}".lower()
        if user_id not in taken:
            break
    return User(
        user_id=user_id,
        first_name=first,
        last_name=last,
        email=f"{first}.{last}{rng.randint(1, 99)}@example.com".lower(),
        address=make_address(rng),
        payment_methods=_payment_methods(rng),
    )


def _order(rng: random.Random, user: User, products: list[Product], status: str, taken: set[str]) -> Order:
    order_id = f"#W{_digits(rng, 7)}"
    while order_id in taken:
        order_id = f"#W{_digits(rng, 7)}"
    taken.add(order_id)
    items = []
    for product in rng.sample(products, rng.randint(1, 3)):
        variant = rng.choice(list(product.variants.values()))
        items.append(
            OrderItem(
                item_id=variant.item_id,
                product_id=product.product_id,
                name=product.name,
                options=dict(variant.options),
                price_cents=variant.price_cents,
            )
        )
    total = sum(i.price_cents for i in items)
    usable = [m for m in user.payment_methods.values() if m.kind != "gift_card" or (m.balance_cents or 0) >= total]
    method = rng.choice(usable)
    return Order(
        order_id=order_id,
        user_id=user.user_id,
        status=status,
        address=user.address.model_copy(),
        items=items,
        payments=[Payment(kind="payment", amount_cents=total, payment_method_id=method.id)],
    )


def make_world(rng: random.Random, customer_statuses: list[str]) -> tuple[RetailState, User, list[Order]]:
    """A world whose customer (returned) has one order per entry of ``customer_statuses``.

    Two other users with one order each are distractors: the agent must not touch them.
    """
    products = [_product(rng, name) for name in rng.sample(sorted(CATALOGUE), 5)]
    users: list[User] = []
    for _ in range(3):
        users.append(_user(rng, {u.user_id for u in users}))
    customer = users[0]
    taken: set[str] = set()
    orders = [_order(rng, customer, products, status, taken) for status in customer_statuses]
    orders += [_order(rng, u, products, rng.choice(("pending", "delivered")), taken) for u in users[1:]]
    for order in orders:
        next(u for u in users if u.user_id == order.user_id).order_ids.append(order.order_id)
    state = RetailState(
        users={u.user_id: u for u in users},
        products={p.product_id: p for p in products},
        orders={o.order_id: o for o in orders},
    )
    return state, customer, orders[: len(customer_statuses)]
