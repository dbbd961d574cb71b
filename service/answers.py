"""What the tools answer: readable text plus ``structuredContent`` in DESIGN.md's shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mcp_types import CallToolResult, TextContent

from service.carts import Cart, CartRejected, CartStorageError
from service.catalog import DEFAULT_CURRENCY, Catalog, Product, SearchPage
from service.sessions import Session
from service.storage_faults import Fault

STORAGE_UNAVAILABLE = "Cart storage unavailable, retry in a moment."
STORAGE_UNAVAILABLE_NOT_SAVED = "Cart storage unavailable, so nothing was saved; retry in a moment."
STORAGE_UNAVAILABLE_MAYBE_SAVED = (
    "Cart storage unavailable (no answer in time); the change may still have been saved, "
    "so check view_cart before retrying."
)
# Failures that retrying does not cure: one sentence each, with the reason and what was saved.
STORAGE_FAULT_TEXTS = {
    Fault.FULL: "Cart storage is full, so nothing was saved; the cart can still be viewed and lines removed.",
    Fault.DAMAGED: (
        "This cart's stored data is damaged, so nothing was changed; clear_cart removes it "
        "(or ask the shop's operator: weft-mcp sessions purge)."
    ),
    Fault.AUTHENTICATION: (
        "Cart storage refused this shop's credentials, so nothing was changed; the shop's operator must fix "
        "the Redis password, and retrying will not help until then."
    ),
    Fault.PERMISSION: (
        "Cart storage does not permit this shop to use carts, so nothing was changed; the shop's operator must "
        "fix Redis' access rules, and retrying will not help until then."
    ),
}


def text_result(text: str, data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"


def product_payload(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "price": money(product.price),
        "category": product.category,
        "image": product.image,
        "url": product.url,
        "is_purchasable": product.is_purchasable,
    }


def cart_payload(session: Session, cart: Cart, catalog: Catalog) -> dict[str, Any]:
    """The cart after a change, in the shape every cart tool returns."""
    items = []
    totals: dict[str, Decimal] = {}
    for line in cart.lines:
        product = catalog.product(line.product_id)
        line_total = line.price * line.quantity
        currency = catalog.currency_of(line.product_id) or DEFAULT_CURRENCY
        totals[currency] = totals.get(currency, Decimal("0")) + line_total
        items.append({
            "id": line.product_id,
            "name": line.name,
            "price": money(line.price),
            "quantity": line.quantity,
            "line_total": money(line_total),
            "image": product.image if product else None,
            "url": product.url if product else None,
        })  # fmt: skip
    single = next(iter(totals)) if len(totals) == 1 else None
    payload: dict[str, Any] = {
        "session": {"id": session.id, "source": session.source, "shared": session.is_fallback},
        "items": items,
        "item_count": sum(line.quantity for line in cart.lines),
        "total": money(totals[single]) if single else ("0.00" if not totals else None),
        "currency": single or (None if totals else DEFAULT_CURRENCY),
    }
    if len(totals) > 1:  # stores with different currencies: no single total makes sense
        payload["totals"] = {currency: money(amount) for currency, amount in totals.items()}
    return payload


def cart_text(payload: dict[str, Any], headline: str = "") -> str:
    lines = [headline] if headline else []
    if not payload["items"]:
        lines.append("The cart is empty.")
        return "\n".join(lines)
    total = (
        payload["total"]
        if payload["total"] is not None
        else ", ".join(f"{amount} {currency}" for currency, amount in payload["totals"].items())
    )
    currency = f" {payload['currency']}" if payload["currency"] else ""
    lines.append(f"Cart: {payload['item_count']} item(s), total {total}{currency}")
    lines += [
        f"- {item['quantity']} x {item['name']} [{item['id']}] @ {item['price']} = {item['line_total']}"
        for item in payload["items"]
    ]
    return "\n".join(lines)


def storage_error_text(exc: CartStorageError, *, retry_safe: bool) -> str:
    """The reason, and whether anything was saved: "may have been saved" only when the command was sent
    and no answer came (a timed-out add may have run, so retrying blindly would add twice)."""
    if exc.kind in STORAGE_FAULT_TEXTS:
        return STORAGE_FAULT_TEXTS[exc.kind]
    if retry_safe:
        return STORAGE_UNAVAILABLE
    return STORAGE_UNAVAILABLE_MAYBE_SAVED if exc.maybe_applied else STORAGE_UNAVAILABLE_NOT_SAVED


def rejection_text(exc: CartRejected, max_quantity: int) -> str:
    """One sentence per cart rule the change broke."""
    if exc.reason == "quantity_limit":
        room = max_quantity - exc.current
        if room <= 0:
            return f"A cart line holds at most {max_quantity}, and this one is full."
        return f"A cart line holds at most {max_quantity} and this one has {exc.current}; add at most {room}."
    if exc.reason == "line_limit":
        return f"The cart already has {exc.current} lines, the most it can hold; remove one before adding another."
    if exc.reason == "not_in_cart":
        return "That product is not in the cart; use add_to_cart to add it, or view_cart to see the lines."
    return f"The cart refused the change ({exc.reason})."


def search_payload(page: SearchPage, query: str, category: str | None, store_id: str | None) -> dict[str, Any]:
    """The original's shape, which its product-grid widget reads."""
    return {
        "products": [product_payload(p) for p in page.products],
        "pagination": {
            "currentPage": page.page,
            "totalPages": page.total_pages,
            "pageSize": page.page_size,
            "totalProducts": page.total,
            "hasNext": page.page < page.total_pages,
            "hasPrev": page.page > 1,
        },
        "filters": {"search": query, "category": category, "store": store_id},
    }


def search_text(page: SearchPage, query: str, category: str | None, catalog: Catalog) -> str:
    head = f"{page.total} product(s) match {query!r}" + (f" in {category!r}" if category else "")
    if page.total:
        head += f"; page {page.page} of {page.total_pages}:"
    rows = []
    for product in page.products:
        price = (
            f"{money(product.price)} {catalog.stores[product.store_id].currency}"
            if product.price is not None
            else "(unavailable: no price)"
        )
        rows.append(f"- {product.name} [{product.id}] {price}")
    return "\n".join([head, *rows])
