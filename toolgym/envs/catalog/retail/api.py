"""The retail customer-service API. Every rule of ``policy.md`` that a tool can check, it checks.

Writes validate everything before changing anything, so a refused call leaves the world as it
was. Reads return fresh JSON data, never live state.
"""

from __future__ import annotations

import re
from typing import Any

from toolgym.envs.api.barrier import reading
from toolgym.envs.api.domain import Domain, NotFound, PolicyViolation
from toolgym.envs.catalog.retail.models import (
    Address,
    CancelReason,
    Order,
    OrderItem,
    Payment,
    RetailState,
    User,
    Variant,
)
from toolgym.envs.tools import tool

_ZIP = re.compile(r"^\d{5}$")
_STATE = re.compile(r"^[A-Z]{2}$")


class RetailApi(Domain[RetailState]):
    """Users, orders and the product catalogue of an online shop, behind a policy."""

    state_model = RetailState

    # ------------------------------------------------------------------ identity

    @tool
    def authenticate_user(self, email: str, zip_code: str) -> dict[str, Any]:
        """Verify the customer's identity by email and the zip code of their default address.

        Args:
            email: The customer's account email.
            zip_code: Five-digit zip code of the customer's default address.
        """
        wanted = email.strip().lower()
        with reading():  # a search: only the session is written, no user needs a copy
            user = next((u for u in self.state.users.values() if u.email == wanted), None)
        if user is None:
            raise NotFound(f"no customer has the email {email!r}; ask the customer to check it")
        if user.address.zip != zip_code.strip():
            raise PolicyViolation(
                "the zip code does not match our records for this email; ask the customer to check it"
            )
        current = self.state.session.user_id
        if current is not None and current != user.user_id:
            raise PolicyViolation(
                f"this conversation is already authenticated as {current}; serve one customer per conversation"
            )
        self.state.session.user_id = user.user_id
        return {"user_id": user.user_id, "authenticated": True}

    # ------------------------------------------------------------------ reads

    @tool(read_only=True)
    def get_user_details(self, user_id: str) -> dict[str, Any]:
        """Profile, default address, payment methods and order ids of the authenticated customer.

        Args:
            user_id: The id returned by authenticate_user.
        """
        return self._user(user_id).model_dump(mode="json")

    @tool(read_only=True)
    def get_order_details(self, order_id: str) -> dict[str, Any]:
        """Status, items, address and payments of one of the authenticated customer's orders.

        Args:
            order_id: Order id such as "#W1234567".
        """
        return self._order(order_id).model_dump(mode="json")

    @tool(read_only=True)
    def get_product_details(self, product_id: str) -> dict[str, Any]:
        """A product with all its variants (item ids, options, prices, availability).

        Args:
            product_id: The product's id (order items carry it).
        """
        product = self.state.products.get(product_id)
        if product is None:
            raise NotFound(f"no product {product_id!r}; list_products shows the catalogue")
        return product.model_dump(mode="json")

    @tool(read_only=True)
    def list_products(self) -> dict[str, str]:
        """Every product in the catalogue as product id -> name."""
        return {p.product_id: p.name for p in self.state.products.values()}

    # ------------------------------------------------------------------ writes

    @tool
    def cancel_pending_order(self, order_id: str, reason: CancelReason, confirm: bool = False) -> dict[str, Any]:
        """Cancel a pending order and refund every payment to the method it came from.

        Args:
            order_id: The order to cancel.
            reason: "no longer needed" or "ordered by mistake", as the customer said.
            confirm: True only after the customer explicitly agreed to this cancellation.
        """
        order = self._order(order_id)
        self._require_status(order, "pending", "cancelled", hint=" (delivered orders can be returned instead)")
        _require_confirmation(confirm, "cancelling an order")
        refunded = 0
        for payment in [p for p in order.payments if p.kind == "payment"]:
            self._refund(order, payment.payment_method_id, payment.amount_cents)
            refunded += payment.amount_cents
        order.status, order.cancel_reason = "cancelled", reason
        return {"order_id": order_id, "status": order.status, "refunded_cents": refunded}

    @tool
    def modify_pending_order_address(
        self, order_id: str, line1: str, city: str, state: str, zip_code: str, confirm: bool = False
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order.

        Args:
            order_id: The order to change.
            line1: Street and number.
            city: City.
            state: Two-letter state code, e.g. "TX".
            zip_code: Five-digit zip code.
            confirm: True only after the customer explicitly agreed to this change.
        """
        order = self._order(order_id)
        self._require_status(order, "pending", "re-addressed")
        address = _address(line1, city, state, zip_code)
        _require_confirmation(confirm, "changing an order's address")
        order.address = address
        return {"order_id": order_id, "address": address.model_dump()}

    @tool
    def modify_user_address(
        self, user_id: str, line1: str, city: str, state: str, zip_code: str, confirm: bool = False
    ) -> dict[str, Any]:
        """Change the customer's default address (existing orders keep theirs).

        Args:
            user_id: The authenticated customer's id.
            line1: Street and number.
            city: City.
            state: Two-letter state code, e.g. "TX".
            zip_code: Five-digit zip code.
            confirm: True only after the customer explicitly agreed to this change.
        """
        user = self._user(user_id)
        address = _address(line1, city, state, zip_code)
        _require_confirmation(confirm, "changing the default address")
        user.address = address
        return {"user_id": user_id, "address": address.model_dump()}

    @tool
    def return_delivered_order_items(
        self, order_id: str, item_ids: list[str], refund_payment_method_id: str, confirm: bool = False
    ) -> dict[str, Any]:
        """Return items of a delivered order; their price is refunded at once.

        Args:
            order_id: The delivered order.
            item_ids: Item ids of the order to return, each once.
            refund_payment_method_id: The order's original payment method or one of the customer's gift cards.
            confirm: True only after the customer explicitly agreed to this return.
        """
        order = self._order(order_id)
        self._require_status(order, "delivered", "returned")
        items = _order_items(order, item_ids)
        original = {p.payment_method_id for p in order.payments if p.kind == "payment"}
        with reading():  # checked here; _refund writes through its own lookup
            method = self._user(order.user_id).payment_methods.get(refund_payment_method_id)
        if method is None or (method.id not in original and method.kind != "gift_card"):
            raise PolicyViolation(
                f"refunds go to the order's original payment method ({', '.join(sorted(original))}) or one of the customer's gift cards, "
                f"not {refund_payment_method_id!r}"
            )
        _require_confirmation(confirm, "returning items")
        amount = sum(i.price_cents for i in items)
        self._refund(order, method.id, amount)
        order.status, order.returned_item_ids = "return_requested", list(item_ids)
        return {"order_id": order_id, "status": order.status, "refunded_cents": amount}

    @tool
    def exchange_delivered_order_items(
        self, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str, confirm: bool = False
    ) -> dict[str, Any]:
        """Exchange items of a delivered order for other available variants of the same products.

        The price difference is charged to (or refunded to) ``payment_method_id``.

        Args:
            order_id: The delivered order.
            item_ids: Item ids of the order to exchange, each once.
            new_item_ids: The new variants' item ids, in the same order as item_ids.
            payment_method_id: One of the customer's payment methods, for the price difference.
            confirm: True only after the customer explicitly agreed to this exchange.
        """
        order = self._order(order_id)
        self._require_status(order, "delivered", "exchanged")
        old = _order_items(order, item_ids)
        if len(new_item_ids) != len(item_ids):
            raise ValueError(
                f"give one new item per exchanged item: {len(item_ids)} item_ids but {len(new_item_ids)} new_item_ids"
            )
        new = [
            self._replacement(item.product_id, item.item_id, new_id)
            for item, new_id in zip(old, new_item_ids, strict=True)
        ]
        with reading():  # a gift card is looked up again below, to be written
            method = self._user(order.user_id).payment_methods.get(payment_method_id)
        if method is None:
            raise PolicyViolation(
                f"{payment_method_id!r} is not one of the customer's payment methods; see get_user_details"
            )
        difference = sum(v.price_cents for v in new) - sum(i.price_cents for i in old)
        if method.kind == "gift_card" and difference > (method.balance_cents or 0):
            raise PolicyViolation(
                f"gift card balance {method.balance_cents} cents cannot cover the difference of {difference} cents; use another method"
            )
        _require_confirmation(confirm, "exchanging items")
        if difference > 0:
            order.payments.append(Payment(kind="payment", amount_cents=difference, payment_method_id=method.id))
            if method.kind == "gift_card":
                method = self.state.users[order.user_id].payment_methods[method.id]
                method.balance_cents = (method.balance_cents or 0) - difference
        elif difference < 0:
            self._refund(order, method.id, -difference)
        order.status, order.exchanged = "exchange_requested", dict(zip(item_ids, new_item_ids, strict=True))
        return {"order_id": order_id, "status": order.status, "price_difference_cents": difference}

    # ------------------------------------------------------------------ helpers (not tools)

    def _user(self, user_id: str) -> User:
        current = self.state.session.user_id
        if current is None:
            raise PolicyViolation(
                "identity not verified: call authenticate_user with the customer's email and zip code first"
            )
        if user_id != current:
            raise PolicyViolation(f"you may only access the authenticated customer ({current}), not {user_id!r}")
        return self.state.users[current]

    def _order(self, order_id: str) -> Order:
        with reading():  # only its id and order ids are read
            user = self._user(self.state.session.user_id or "")
        order = self.state.orders.get(order_id)
        if order is None or order.user_id != user.user_id:
            raise NotFound(
                f"the customer has no order {order_id!r}; their orders are {', '.join(user.order_ids) or 'none'}"
            )
        return order

    @staticmethod
    def _require_status(order: Order, status: str, verb: str, hint: str = "") -> None:
        if order.status != status:
            raise PolicyViolation(f"order {order.order_id} is {order.status}; only {status} orders can be {verb}{hint}")

    def _replacement(self, product_id: str, old_item_id: str, new_item_id: str) -> Variant:
        with reading():  # the catalogue is only read
            product = self.state.products[product_id]
        variant = product.variants.get(new_item_id)
        if variant is None:
            raise PolicyViolation(
                f"{new_item_id!r} is not a variant of {product.name} ({product_id}); exchanges stay within the same product"
            )
        if new_item_id == old_item_id or not variant.available:
            raise PolicyViolation(
                f"variant {new_item_id} is {'the same item' if new_item_id == old_item_id else 'not available'}; pick another available variant"
            )
        return variant

    def _refund(self, order: Order, method_id: str, amount: int) -> None:
        order.payments.append(Payment(kind="refund", amount_cents=amount, payment_method_id=method_id))
        with reading():  # only a gift card's balance changes: the user is copied for that alone
            method = self.state.users[order.user_id].payment_methods.get(method_id)
        if method is not None and method.kind == "gift_card":
            method = self.state.users[order.user_id].payment_methods[method_id]
            method.balance_cents = (method.balance_cents or 0) + amount


def _require_confirmation(confirm: bool, action: str) -> None:
    if not confirm:
        raise PolicyViolation(
            f"{action} needs the customer's explicit confirmation: describe the change, get a clear yes, then call again with confirm=true"
        )


def _address(line1: str, city: str, state: str, zip_code: str) -> Address:
    if not line1.strip() or not city.strip():
        raise ValueError("line1 and city must not be empty")
    if not _STATE.match(state):
        raise ValueError(f"state must be a two-letter code such as 'TX', got {state!r}")
    if not _ZIP.match(zip_code):
        raise ValueError(f"zip_code must have five digits, got {zip_code!r}")
    return Address(line1=line1.strip(), city=city.strip(), state=state, zip=zip_code)


def _order_items(order: Order, item_ids: list[str]) -> list[OrderItem]:
    if not item_ids:
        raise ValueError("item_ids must name at least one item of the order")
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("each item id may appear only once in item_ids")
    by_id = {i.item_id: i for i in order.items}
    missing = [i for i in item_ids if i not in by_id]
    if missing:
        raise NotFound(f"order {order.order_id} has no item {missing[0]!r}; its items are {', '.join(by_id)}")
    return [by_id[i] for i in item_ids]
