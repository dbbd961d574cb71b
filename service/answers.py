"""What the tools answer: readable text plus ``structuredContent`` in DESIGN.md's shapes."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from mcp_types import CallToolResult, TextContent

from service.arguments import ArgumentError
from service.cart_count import CartCount
from service.cart_ids import CartIdError
from service.cart_transfers import Claimed, Share, TransferError
from service.carts import Cart, CartRejected, CartStorageError
from service.catalog import DEFAULT_CURRENCY, Catalog, Product, SearchPage, SearchRefused
from service.checkout import NO_TEMPLATE_NOTE, NOTE, checkout_links
from service.claim_limits import ClaimRateLimited
from service.idempotency import CONFLICT
from service.sessions import CART_ID_SOURCE, NONE_SOURCE, Session, SessionError
from service.storage_faults import Fault
from service.transfer_codes import CodeShapeError

STORAGE_UNAVAILABLE = "Cart storage unavailable, retry in a moment."
STORAGE_UNAVAILABLE_NOT_SAVED = "Cart storage unavailable, so nothing was saved; retry in a moment."
STORAGE_UNAVAILABLE_MAYBE_SAVED = (
    "Cart storage unavailable (no answer in time); the change may still have been saved, "
    "so check view_cart before retrying."
)
STORAGE_UNAVAILABLE_MAYBE_SAVED_KEYED = (
    "Cart storage unavailable (no answer in time); the change may still have been saved; "
    "retrying with the same idempotency-key is safe."
)
STORAGE_UNAVAILABLE_MAYBE_SAVED_MINTED = (
    "Cart storage unavailable (no answer in time); a new cart holding this line may still have been made, but "
    "its cart_id did not arrive, so a retry starts another new cart; pass a cart_id or a conversation id to "
    "retry safely."
)
SIGN_IN_HINT = "Signing in keeps this cart across devices and chats."
REPLAYED = "Already done: this idempotency key's change was applied before, so nothing changed now."
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


# Every failure a tool answers instead of raising: each is one sentence for the client, and none changed anything
# (except a timed-out add, which ``storage_error_text`` says may have been saved).
TOOL_ERRORS = (
    ArgumentError,
    SessionError,
    CartIdError,
    SearchRefused,
    CartRejected,
    CartStorageError,
    CodeShapeError,
    TransferError,
    ClaimRateLimited,
)


def error_answer(exc: Exception, *, max_quantity: int, retry_safe: bool) -> CallToolResult:
    """The one mapping from a ``TOOL_ERRORS`` failure to its ``isError`` answer, used by every tool.

    ``max_quantity`` is the cart store's, for the quantity rule; ``retry_safe`` is false for a change
    that must not be repeated blindly (add_to_cart), so a storage failure says whether it may have run.
    """
    if isinstance(exc, CartRejected):
        return error_result(rejection_text(exc, max_quantity))
    if isinstance(exc, CartStorageError):
        return error_result(storage_error_text(exc, retry_safe=retry_safe))
    return error_result(str(exc))


def text_result(text: str, data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"


def product_payload(product: Product, currency: str) -> dict[str, Any]:
    """One product as search_products gives it; ``currency`` is its store's, for formatting ``price``."""
    return {
        "id": product.id,
        "name": product.name,
        "price": money(product.price),
        "category": product.category,
        "image": product.image,
        "url": product.url,
        "is_purchasable": product.is_purchasable,
        "currency": currency,
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
        items.append(
            {
                "id": line.product_id,
                "name": line.name,
                "price": money(line.price),
                "quantity": line.quantity,
                "line_total": money(line_total),
                "currency": currency,  # the store's, for formatting price and line_total (several in one cart)
                "image": product.image if product else None,
                "url": product.url if product else None,
            }
        )
    single = next(iter(totals)) if len(totals) == 1 else None
    payload: dict[str, Any] = {
        "cart_id": session.cart_id,  # pass it as cart_id in later calls; null while the call named no cart
        "session": {"id": session.id or None, "source": session.source, "shared": session.is_shared},
        "items": items,
        "item_count": sum(line.quantity for line in cart.lines),
        "total": money(totals[single]) if single else ("0.00" if not totals else None),
        "currency": single or (None if totals else DEFAULT_CURRENCY),
        "damaged_lines": cart.damaged_lines,  # unreadable stored lines, left out of items and totals
    }
    if len(totals) > 1:  # stores with different currencies: no single total makes sense
        payload["totals"] = {currency: money(amount) for currency, amount in totals.items()}
    if cart.replayed:
        payload["replayed"] = True
    if session.claimed is not None:  # signing in merged earlier carts into this one on this call
        payload["claimed"] = dict(session.claimed)
    return payload


def cart_answer(
    session: Session, cart: Cart, catalog: Catalog, headline: str, *, signin_hint: bool = False
) -> CallToolResult:
    """What every cart tool answers: ``headline`` and the cart's lines, and the cart payload; the text ends
    with the cart_id to pass on when the caller did not send it (or sent another: a signed-in shopper's
    guest cart_id answers the shopper's own), and, for ``signin_hint``, one line about signing in."""
    payload = cart_payload(session, cart, catalog)
    text = signed_in_prefix(session) + cart_text(payload, REPLAYED if cart.replayed else headline)
    text += cart_id_line(session)
    if signin_hint:
        text += "\n" + SIGN_IN_HINT
    return text_result(text, payload)


def signed_in_prefix(session: Session) -> str:
    """The first line of an answer whose call merged a signed-in shopper's earlier cart, else ''."""
    return "" if session.claimed is None else signed_in_merge_text(session.claimed) + "\n"


def signed_in_merge_text(claimed: Mapping[str, Any]) -> str:
    """Said once, on the call that merged: what signing in brought into the shopper's cart."""
    text = f"Signed in: {claimed['lines']} line(s) from this chat's earlier cart are now in your cart."
    if claimed["capped"]:
        text += f" Capped at the most a line holds: {', '.join(claimed['capped'])}."
    if claimed["skipped"]:
        text += f" Left out (no longer sold, no price, or no room): {', '.join(claimed['skipped'])}."
    return text


def cart_id_line(session: Session) -> str:
    """The line that ends an answer naming a cart the caller did not name by this cart_id (a signed-in shopper's
    guest cart_id answers the shopper's own): the id to pass on."""
    if session.cart_id is not None and (session.source != CART_ID_SOURCE or session.cart_id != session.id):
        return f"\ncart_id: {session.cart_id} (pass it as cart_id in later calls)"
    return ""


def share_answer(session: Session, shared: Share, code_ttl_seconds: int) -> CallToolResult:
    """``{"code", "expires_at", "cart_id", "item_count"}`` (+ ``claimed`` when signing in merged a cart), and what
    the code lets its holder do."""
    minutes = max(1, round(code_ttl_seconds / 60))
    item_count = sum(line.quantity for line in shared.cart.lines)
    payload: dict[str, Any] = {
        "code": shared.code,
        "expires_at": shared.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cart_id": session.cart_id,
        "item_count": item_count,
    }
    if session.claimed is not None:  # signing in merged an earlier cart into the shared one on this call
        payload["claimed"] = dict(session.claimed)
    text = signed_in_prefix(session) + (
        f"Transfer code: {shared.code} (valid until {payload['expires_at']}). Whoever has this code can move this "
        f"cart's {item_count} item(s) into their own cart with claim_cart, within {minutes} minutes, once; "
        "sharing again replaces it."
    )
    return text_result(text + cart_id_line(session), payload)


def claim_answer(session: Session, claimed: Claimed, catalog: Catalog) -> CallToolResult:
    """The target cart, as every cart answer, plus ``"claimed": {"lines", "capped", "skipped"}``."""
    payload = cart_payload(session, claimed.cart, catalog)
    merged = session.claimed or {"lines": 0, "capped": [], "skipped": []}  # a sign-in merge on this call too
    payload["claimed"] = {
        "lines": claimed.lines + merged["lines"],
        "capped": list(dict.fromkeys([*merged["capped"], *claimed.capped])),
        "skipped": list(dict.fromkeys([*merged["skipped"], *claimed.skipped])),
    }
    if claimed.replayed:
        payload["replayed"] = True
    headline = f"Claimed {claimed.lines} line(s) into this cart."
    if claimed.capped:
        headline += f" Capped at the most a line holds: {', '.join(claimed.capped)}."
    if claimed.skipped:
        headline += f" Left out (no longer sold, no price, or no room): {', '.join(claimed.skipped)}."
    text = signed_in_prefix(session) + cart_text(payload, REPLAYED if claimed.replayed else headline)
    return text_result(text + cart_id_line(session), payload)


def checkout_answer(session: Session, cart: Cart, catalog: Catalog) -> CallToolResult:
    """``checkout_link``: DESIGN's ``{"links", "note"}`` (plus the cart's ``cart_id``); the text gives each link
    and says, as the note does, that opening one places no order."""
    lines = [(line.product_id, line.quantity) for line in cart.lines]

    def product_url(product_id: str) -> str | None:
        product = catalog.product(product_id)
        return product.url if product else None

    links = checkout_links(lines, catalog.stores, product_url)
    note = NOTE + (NO_TEMPLATE_NOTE if any(link["url"] is None for link in links) else "")
    data: dict[str, Any] = {"cart_id": session.cart_id, "links": links, "note": note}
    if session.claimed is not None:  # signing in merged an earlier cart into this one on this call
        data["claimed"] = dict(session.claimed)
    if not links:
        return text_result("The cart is empty: there is nothing to check out.", data)
    rows = []
    for link in links:
        name = catalog.stores[link["store"]].name if link["store"] in catalog.stores else link["store"]
        count = sum(item["quantity"] for item in link["items"])
        if link["url"] is not None:
            rows.append(f"- {name}, {count} item(s): {link['url']}")
        else:
            pages = ", ".join(item["url"] or f"{item['id']} (no page)" for item in link["items"])
            rows.append(f"- {name}, {count} item(s), no checkout link; product pages: {pages}")
    return text_result(signed_in_prefix(session) + "\n".join(["Checkout links:", *rows, note]), data)


def damaged_lines_text(count: int) -> str:
    """Said once in every cart answer while unreadable lines are stored: the shopper keeps the readable ones."""
    return (
        f"{count} stored line(s) of this cart are damaged and were left out; clear_cart removes them "
        "(or ask the shop's operator: weft-mcp sessions purge)."
    )


def cart_text(payload: dict[str, Any], headline: str = "") -> str:
    lines = [headline] if headline else []
    damaged = payload.get("damaged_lines", 0)
    if not payload["items"]:
        lines.append("The cart has no readable lines." if damaged else "The cart is empty.")
        if damaged:
            lines.append(damaged_lines_text(damaged))
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
    if damaged:
        lines.append(damaged_lines_text(damaged))
    return "\n".join(lines)


def storage_error_text(exc: CartStorageError, *, retry_safe: bool, keyed: bool = False, minted: bool = False) -> str:
    """The reason, and whether anything was saved: "may have been saved" only when the command was sent
    and no answer came (a timed-out add may have run, so retrying blindly would add twice; with an
    idempotency key, ``keyed``, retrying with the same key is safe, and the answer says so). ``minted``: the
    add was making a new cart whose cart_id the caller never got, so no retry reaches it."""
    if exc.kind in STORAGE_FAULT_TEXTS:
        return STORAGE_FAULT_TEXTS[exc.kind]
    if retry_safe:
        return STORAGE_UNAVAILABLE
    if not exc.maybe_applied:
        return STORAGE_UNAVAILABLE_NOT_SAVED
    if minted:
        return STORAGE_UNAVAILABLE_MAYBE_SAVED_MINTED
    return STORAGE_UNAVAILABLE_MAYBE_SAVED_KEYED if keyed else STORAGE_UNAVAILABLE_MAYBE_SAVED


def rejection_text(exc: CartRejected, max_quantity: int) -> str:
    """One sentence per cart rule the change broke."""
    if exc.reason == "quantity_limit":
        room = max_quantity - exc.current
        if room <= 0:
            return f"A cart line holds at most {max_quantity}, and this one is full."
        return f"A cart line holds at most {max_quantity} and this one has {exc.current}; add at most {room}."
    if exc.reason == "line_limit":
        return f"The cart already has {exc.current} lines, the most it can hold; remove one before adding another."
    if exc.reason == "damaged_line":
        return (
            "That product's stored line in this cart is damaged, so nothing was changed; remove_from_cart "
            "removes that line, then add the product again."
        )
    if exc.reason == "idempotency_conflict":
        return CONFLICT
    if exc.reason == "not_in_cart":
        return "That product is not in the cart; use add_to_cart to add it, or view_cart to see the lines."
    return f"The cart refused the change ({exc.reason})."


def stores_answer(catalog: Catalog) -> CallToolResult:
    stores = [
        {"id": s.id, "name": s.name, "currency": s.currency, "product_count": len(s.products)}
        for s in catalog.stores.values()
    ]
    text = "\n".join(f"- {s['name']} [{s['id']}]: {s['product_count']} products, {s['currency']}" for s in stores)
    return text_result(f"{len(stores)} store(s):\n{text}", {"stores": stores})


def search_answer(
    page: SearchPage,
    query: str,
    category: str | None,
    store_id: str | None,
    catalog: Catalog,
    cart_id: str | None = None,
) -> CallToolResult:
    payload = search_payload(page, query, category, store_id, catalog, cart_id)
    return text_result(search_text(page, query, category, catalog), payload)


def search_payload(
    page: SearchPage,
    query: str,
    category: str | None,
    store_id: str | None,
    catalog: Catalog,
    cart_id: str | None = None,
) -> dict[str, Any]:
    """DESIGN.md's search shape (``pagination`` in camelCase), which product-grid widgets read; ``cart_id`` is
    the cart the call named (so a widget's add buttons reach it), else null."""
    return {
        "cart_id": cart_id,
        "products": [product_payload(p, catalog.stores[p.store_id].currency) for p in page.products],
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


def debug_answer(
    session: Session, cart: Cart, count: CartCount, counted_seconds_ago: float, backend: str
) -> CallToolResult:
    """Which conversation this call was filed under; other carts appear only as the aggregate ``count``."""
    ago = round(counted_seconds_ago, 1)
    data = {
        "session_id": session.id or None,
        "session_source": session.source,
        "cart_id": session.cart_id,
        "items_in_cart": len(cart.lines),
        "active_sessions": count.carts,
        "counted_at": count.counted_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "counted_seconds_ago": ago,
        "storage": backend,
        "shared_fallback_cart": session.is_shared,
    }
    named = (
        "No cart named (no cart_id or conversation id)"
        if session.source == NONE_SOURCE
        else (f"Session {session.id!r} (from {session.source})")
    )
    text = (
        f"{named}; {len(cart.lines)} line(s) in its cart; "
        f"{count.carts} active cart(s) in {backend} storage (counted {ago:g} s ago)."
    )
    if session.is_fallback:
        text += " WARNING: no conversation id was sent, so this call used the cart shared by all such calls."
    return text_result(text, data)
