"""The retail world: users with addresses and payment methods, a product catalogue, orders."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolgym.envs.api.domain import StateModel

OrderStatus = Literal["pending", "processed", "delivered", "cancelled", "return_requested", "exchange_requested"]
PaymentKind = Literal["credit_card", "gift_card", "paypal"]
CancelReason = Literal["no longer needed", "ordered by mistake"]


class Address(StateModel):
    """A postal address."""

    line1: str
    city: str
    state: str
    """Two-letter US state code."""
    zip: str


class PaymentMethod(StateModel):
    """A way to pay; gift cards carry a balance."""

    id: str
    kind: PaymentKind
    label: str
    """How the customer knows it, e.g. "Visa ending 4242"."""
    balance_cents: int | None = None
    """Remaining balance (gift cards only)."""


class User(StateModel):
    """A customer account."""

    user_id: str
    first_name: str
    last_name: str
    email: str
    address: Address
    payment_methods: dict[str, PaymentMethod]
    order_ids: list[str] = Field(default_factory=list)


class Variant(StateModel):
    """One purchasable option combination of a product."""

    item_id: str
    options: dict[str, str]
    price_cents: int
    available: bool = True


class Product(StateModel):
    """A product type with its variants."""

    product_id: str
    name: str
    variants: dict[str, Variant]


class OrderItem(StateModel):
    """A line of an order (one unit of one variant)."""

    item_id: str
    product_id: str
    name: str
    options: dict[str, str]
    price_cents: int


class Payment(StateModel):
    """Money moved for an order: a charge (positive) or a refund."""

    kind: Literal["payment", "refund"]
    amount_cents: int
    payment_method_id: str


class Order(StateModel):
    """An order and everything that happened to it."""

    order_id: str
    user_id: str
    status: OrderStatus
    address: Address
    items: list[OrderItem]
    payments: list[Payment]
    cancel_reason: CancelReason | None = None
    returned_item_ids: list[str] = Field(default_factory=list)
    exchanged: dict[str, str] = Field(default_factory=dict)
    """Old item id -> new item id, for an exchange."""


class Session(StateModel):
    """Who the agent has verified in this conversation."""

    user_id: str | None = None


class RetailState(StateModel):
    """The whole retail world of one task."""

    users: dict[str, User]
    products: dict[str, Product]
    orders: dict[str, Order]
    session: Session = Field(default_factory=Session)
