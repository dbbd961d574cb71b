"""The eight MCP tools: parse arguments, call the catalog or the cart store, format the answer.

Arguments are checked here rather than by pydantic so that every rejection is one sentence
that says what was wrong and what to send instead (DESIGN.md); the JSON schemas the client
sees are still exact. Every answer is readable text plus ``structuredContent``; every
rejection is an ``isError`` result and changes nothing.
"""

import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import WithJsonSchema

from service import __version__
from service.carts import Cart, CartRejected, CartStorageError, CartStore
from service.catalog import Catalog, Product
from service.config import Settings
from service.sessions import Session, SessionError, resolve_session

logger = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 200
MAX_PAGE_SIZE = 50
MAX_ID_LENGTH = 200
_PRODUCT_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[^\s:]+$")
STORAGE_UNAVAILABLE = "Cart storage unavailable, retry in a moment."


class ArgumentError(ValueError):
    """A tool argument is unusable; the message is the sentence the client sees."""


@dataclass(frozen=True, slots=True)
class Shop:
    """What the tools work on; built once per worker by the app."""

    catalog: Catalog
    carts: CartStore
    settings: Settings


def text_result(text: str, data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:.2f}"


# ---------------------------------------------------------------- argument checks


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """An integer in ``low..high``; ``2``, ``2.0`` and ``"2"`` are accepted, ``true`` and ``2.5`` are not."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 12:
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise ArgumentError(f"{name} must be a whole number from {low} to {high}; got {_shown(value)}.")
    return number


def short_text(value: Any, name: str, limit: int = MAX_QUERY_LENGTH) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string; got {_shown(value)}.")
    if len(value) > limit:
        raise ArgumentError(f"{name} is {len(value)} characters long; send at most {limit}.")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- formatting


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
        currency = catalog.currency_of(line.product_id) or "ILS"
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
        "currency": single or (None if totals else "ILS"),
    }
    if len(totals) > 1:  # stores with different currencies: no single total makes sense
        payload["totals"] = {currency: money(amount) for currency, amount in totals.items()}
    return payload


def cart_text(payload: dict[str, Any], headline: str = "") -> str:
    lines = [headline] if headline else []
    if not payload["items"]:
        lines.append("The cart is empty.")
        return "\n".join(lines)
    total = payload["total"] if payload["total"] is not None else ", ".join(
        f"{amount} {currency}" for currency, amount in payload["totals"].items()
    )
    currency = f" {payload['currency']}" if payload["currency"] else ""
    lines.append(f"Cart: {payload['item_count']} item(s), total {total}{currency}")
    lines += [
        f"- {item['quantity']} x {item['name']} [{item['id']}] @ {item['price']} = {item['line_total']}"
        for item in payload["items"]
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- sessions


async def session_of(ctx: Context, fallback: str) -> Session:
    """The calling conversation, read through the SDK's request context (never ``getattr(params, '_meta')``)."""
    request_context = ctx.request_context
    params_meta = request_context.meta
    session = None
    if not _has_session_key(params_meta):
        session = resolve_session(None, await _envelope_meta(request_context.request), fallback)  # type: ignore[arg-type]
    else:
        session = resolve_session(params_meta, None, fallback)  # type: ignore[arg-type]
    if session.is_fallback:
        logger.warning("No conversation id in _meta: using the shared %r cart", session.id)
    else:
        logger.info("Using session ID: %s (from %s)", session.short_id, session.source)
    return session


def _has_session_key(meta: Any) -> bool:
    return isinstance(meta, dict) and any(meta.get(k) is not None for k in ("sessionId", "conversationId", "openai/session"))


async def _envelope_meta(request: Any) -> dict[str, Any] | None:
    """The JSON-RPC message's top-level ``_meta``; the SDK's models drop it, so read the (cached) body."""
    body = getattr(request, "body", None)
    if body is None:
        return None
    try:
        message = json.loads(await body())
    except (ValueError, RuntimeError):
        return None
    meta = message.get("_meta") if isinstance(message, dict) else None
    return meta if isinstance(meta, dict) else None


# ---------------------------------------------------------------- the tools


INSTRUCTIONS = (
    "A shop: search_products finds products, add_to_cart and the other cart tools keep one cart "
    "per conversation. Send the conversation id in _meta (sessionId) so each chat gets its own cart."
)


def create_server(shop: Shop) -> MCPServer:
    """The MCP server with the tools of DESIGN.md bound to ``shop``."""
    server = MCPServer(
        name="weft", version=__version__, instructions=INSTRUCTIONS, log_level=shop.settings.log_level
    )
    register_tools(server, shop)
    return server


def register_tools(server: MCPServer, shop: Shop) -> None:
    """Add the eight tools of DESIGN.md to ``server``, bound to ``shop``."""
    settings, catalog, carts = shop.settings, shop.catalog, shop.carts
    max_quantity, fallback = settings.max_quantity, settings.session_fallback
    read_only = ToolAnnotations(read_only_hint=True)

    ProductId = Annotated[Any, WithJsonSchema({"type": "string", "description": "A product id from search_products."})]
    AddQuantity = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": max_quantity, "default": 1})]
    SetQuantity = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 0, "maximum": max_quantity, "description": "0 removes the line."})]  # noqa: E501
    Text = Annotated[Any, WithJsonSchema({"type": "string", "maxLength": MAX_QUERY_LENGTH})]
    OptionalText = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_QUERY_LENGTH}, {"type": "null"}], "default": None})]  # noqa: E501
    Page = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "default": 1})]
    PageSize = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 12})]

    def purchasable(product_id: Any) -> Product:
        raw = short_text(product_id, "product_id", MAX_ID_LENGTH)
        product = catalog.product(raw.strip())
        if product is None:
            raise ArgumentError(f"There is no product {raw!r}; use an id from search_products, like 'store:i1234'.")
        if not product.is_purchasable:
            raise ArgumentError(f"{product.name!r} has no price and cannot be bought now; choose another product.")
        return product

    async def cart_call(ctx: Context, change: Any, headline: str) -> CallToolResult:
        """Resolve the session, run one cart operation, format; every failure becomes an isError result."""
        try:
            session = await session_of(ctx, fallback)
            cart = await change(session)
        except (ArgumentError, SessionError) as exc:
            return error_result(str(exc))
        except CartRejected as exc:
            return error_result(_rejection_text(exc, max_quantity, settings.max_cart_lines))
        except CartStorageError:
            return error_result(STORAGE_UNAVAILABLE)
        payload = cart_payload(session, cart, catalog)
        return text_result(cart_text(payload, headline), payload)

    @server.tool(name="list_stores", description="List the stores: id, name, currency and product count.", annotations=read_only)  # noqa: E501
    async def list_stores() -> CallToolResult:
        stores = [
            {"id": s.id, "name": s.name, "currency": s.currency, "product_count": len(s.products)}
            for s in catalog.stores.values()
        ]
        text = "\n".join(f"- {s['name']} [{s['id']}]: {s['product_count']} products, {s['currency']}" for s in stores)
        return text_result(f"{len(stores)} store(s):\n{text}", {"stores": stores})

    @server.tool(
        name="search_products",
        description=(
            "Search the catalog. Every word of `search` must match the name, category or description "
            "(\"\" lists everything); best matches first. Optional `category` and `store` filters; paged."
        ),
        annotations=read_only,
    )
    async def search_products(
        search: Text = "", category: OptionalText = None, store: OptionalText = None, page: Page = 1, page_size: PageSize = 12
    ) -> CallToolResult:
        try:
            query = short_text("" if search is None else search, "search")
            wanted_category = None if category in (None, "") else short_text(category, "category")
            store_id = None if store in (None, "") else short_text(store, "store")
            if store_id is not None and store_id not in catalog.stores:
                raise ArgumentError(f"There is no store {store_id!r}; use one of {sorted(catalog.stores)}.")
            page_number = whole_number(page, "page", 1, 1_000_000)
            size = whole_number(page_size, "page_size", 1, MAX_PAGE_SIZE)
            result = catalog.search(query, category=wanted_category, store_id=store_id, page=page_number, page_size=size)
            if page_number > max(1, result.total_pages):
                raise ArgumentError(f"page {page_number} is past the last page ({max(1, result.total_pages)}); ask for a lower page.")  # noqa: E501
        except ArgumentError as exc:
            return error_result(str(exc))
        data = {
            "products": [product_payload(p) for p in result.products],
            "pagination": {
                "currentPage": result.page,
                "totalPages": result.total_pages,
                "pageSize": result.page_size,
                "totalProducts": result.total,
                "hasNext": result.page < result.total_pages,
                "hasPrev": result.page > 1,
            },
            "filters": {"search": query, "category": wanted_category, "store": store_id},
        }
        rows = [
            f"- {p.name} [{p.id}] {money(p.price) + ' ' + catalog.stores[p.store_id].currency if p.price else '(unavailable: no price)'}"  # noqa: E501
            for p in result.products
        ]
        head = f"{result.total} product(s) match {query!r}" + (f" in {wanted_category!r}" if wanted_category else "")
        if result.total:
            head += f"; page {result.page} of {result.total_pages}:"
        return text_result("\n".join([head, *rows]), data)

    @server.tool(name="add_to_cart", description="Add a product to this conversation's cart (adds to the line if it is there).")  # noqa: E501
    async def add_to_cart(product_id: ProductId, ctx: Context, quantity: AddQuantity = 1) -> CallToolResult:
        async def change(session: Session) -> Cart:
            product = purchasable(product_id)
            count = whole_number(quantity, "quantity", 1, max_quantity)
            assert product.price is not None
            return await carts.add(session.key, product.id, count, product.name, product.price)

        return await cart_call(ctx, change, "Added to the cart.")

    @server.tool(name="update_cart_item", description="Set the quantity of a line in this conversation's cart; 0 removes it.")  # noqa: E501
    async def update_cart_item(product_id: ProductId, quantity: SetQuantity, ctx: Context) -> CallToolResult:
        async def change(session: Session) -> Cart:
            product = _known(catalog, product_id)
            count = whole_number(quantity, "quantity", 0, max_quantity)
            return await carts.set_quantity(session.key, product, count)

        return await cart_call(ctx, change, "Cart updated.")

    @server.tool(name="remove_from_cart", description="Remove a product's line from this conversation's cart.")
    async def remove_from_cart(product_id: ProductId, ctx: Context) -> CallToolResult:
        async def change(session: Session) -> Cart:
            return await carts.remove(session.key, _known(catalog, product_id))

        return await cart_call(ctx, change, "Removed from the cart.")

    @server.tool(name="view_cart", description="Show this conversation's cart: lines and total.", annotations=read_only)
    async def view_cart(ctx: Context) -> CallToolResult:
        return await cart_call(ctx, lambda session: carts.view(session.key), "")

    @server.tool(name="clear_cart", description="Empty this conversation's cart.", annotations=ToolAnnotations(destructive_hint=True))  # noqa: E501
    async def clear_cart(ctx: Context) -> CallToolResult:
        return await cart_call(ctx, lambda session: carts.clear(session.key), "Cart cleared.")

    if settings.debug_tool:

        @server.tool(
            name="debug_session",
            description="Show which conversation id this call was filed under and how many carts exist (no other ids).",
            annotations=read_only,
        )
        async def debug_session(ctx: Context) -> CallToolResult:
            try:
                session = await session_of(ctx, fallback)
                cart = await carts.view(session.key)
                active = await carts.count_carts()
            except SessionError as exc:
                return error_result(str(exc))
            except CartStorageError:
                return error_result(STORAGE_UNAVAILABLE)
            data = {
                "session_id": session.id,
                "session_source": session.source,
                "items_in_cart": len(cart.lines),
                "active_sessions": active,
                "storage": carts.backend,
                "shared_fallback_cart": session.is_fallback,
            }
            text = (
                f"Session {session.id!r} (from {session.source}); {len(cart.lines)} line(s) in its cart; "
                f"{active} active cart(s) in {carts.backend} storage."
            )
            if session.is_fallback:
                text += " WARNING: no conversation id was sent, so this call used the cart shared by all such calls."
            return text_result(text, data)


def _known(catalog: Catalog, product_id: Any) -> str:
    """The canonical id of a product already in a cart; ids the catalog dropped still work."""
    raw = short_text(product_id, "product_id", MAX_ID_LENGTH).strip()
    if not _PRODUCT_ID_SHAPE.match(raw):
        raise ArgumentError(f"{raw!r} is not a product id; send the id shown in the cart, like 'store:i1234'.")
    product = catalog.product(raw)
    return product.id if product else raw


def _rejection_text(exc: CartRejected, max_quantity: int, max_lines: int) -> str:
    if exc.reason == "quantity_limit":
        room = max_quantity - exc.current
        return (
            f"A cart line holds at most {max_quantity} and this one has {exc.current}; "
            f"add at most {room}." if room > 0 else f"A cart line holds at most {max_quantity}, and this one is full."
        )
    if exc.reason == "line_limit":
        return f"The cart already has {exc.current} lines, the most it can hold; remove one before adding another."
    if exc.reason == "not_in_cart":
        return "That product is not in the cart; use add_to_cart to add it, or view_cart to see the lines."
    return f"The cart refused the change ({exc.reason})."
