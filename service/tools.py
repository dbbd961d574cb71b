"""The eight MCP tools of DESIGN.md: thin functions that parse, call the catalog or carts, and answer.

Arguments are declared with exact JSON schemas but checked by ``service.arguments``, so every
rejection is one sentence; every rejection is an ``isError`` result and changes nothing.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import WithJsonSchema

from service import __version__
from service.answers import (
    cart_payload,
    cart_text,
    error_result,
    rejection_text,
    search_payload,
    search_text,
    storage_error_text,
    text_result,
)
from service.arguments import (
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    ArgumentError,
    product_id_text,
    short_text,
    whole_number,
)
from service.auth import AuthSetup, caller_subject
from service.carts import Cart, CartRejected, CartStorageError, CartStore
from service.catalog import Catalog, Product, SearchPage, SearchRefused
from service.config import Settings
from service.metrics import ToolMetrics
from service.protocol_errors import PlainMethodErrors, PlainToolErrors
from service.sessions import Session, SessionError, calling_session

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "A shop: search_products finds products, add_to_cart and the other cart tools keep one cart "
    "per conversation. Send the conversation id in _meta (sessionId) so each chat gets its own cart."
)
READ_ONLY = ToolAnnotations(read_only_hint=True)
MAX_PAGE = 1_000_000
SEARCH_THREADS = 1  # searches run at once per worker, each in a thread: the event loop never waits for one

# Exact schemas for the client; the values themselves are checked by service.arguments.
ProductId = Annotated[Any, WithJsonSchema({"type": "string", "description": "A product id from search_products."})]
Text = Annotated[Any, WithJsonSchema({"type": "string", "maxLength": MAX_QUERY_LENGTH})]
OptionalText = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_QUERY_LENGTH}, {"type": "null"}]})
]
Page = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1})]
PageSize = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE})]


def quantity_schema(low: int, high: int, description: str) -> Any:
    return Annotated[
        Any, WithJsonSchema({"type": "integer", "minimum": low, "maximum": high, "description": description})
    ]


@dataclass(frozen=True, slots=True)
class Shop:
    """What the tools work on; built once per worker by the app."""

    catalog: Catalog
    carts: CartStore
    settings: Settings


def create_server(shop: Shop, auth: AuthSetup | None = None) -> MCPServer:
    """The MCP server with the tools of DESIGN.md bound to ``shop``; ``auth`` turns on bearer tokens."""
    server = PlainToolErrors(
        name="weft",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=shop.settings.log_level,
        token_verifier=auth.verifier if auth else None,
        auth=auth.settings if auth else None,
    )
    register_tools(server, shop)

    async def tool_names() -> list[str]:
        return [tool.name for tool in await server.list_tools()]

    server.middleware.append(ToolMetrics(tool_names))  # /metrics: every tool call counted and timed
    server.middleware.append(PlainMethodErrors())  # no input echoed in "Method not found" and the like
    return server


def register_tools(server: MCPServer, shop: Shop) -> None:
    """Add the eight tools to ``server`` (seven when ``WEFT_DEBUG_TOOL=false``)."""
    settings, catalog, carts = shop.settings, shop.catalog, shop.carts
    max_quantity = settings.max_quantity
    AddQuantity = quantity_schema(1, max_quantity, "How many to add.")
    SetQuantity = quantity_schema(0, max_quantity, "The line's new quantity; 0 removes the line.")

    search_limiter: list[anyio.CapacityLimiter] = []  # made on first use, inside the worker's event loop

    async def run_search(query: str, **options: Any) -> SearchPage:
        """``catalog.search`` in a worker thread: a broad query over a big catalog costs tens of ms of CPU."""
        if not search_limiter:
            search_limiter.append(anyio.CapacityLimiter(SEARCH_THREADS))
        search = functools.partial(catalog.search, query, **options)
        return await anyio.to_thread.run_sync(search, limiter=search_limiter[0])

    async def session_of(ctx: Context) -> Session:
        request = ctx.request_context
        subject = caller_subject(request.request)  # with auth on, the cart key is the user's too
        return await calling_session(request.meta, request.request, settings.session_fallback, subject)

    def purchasable(product_id: Any) -> Product:
        raw = product_id_text(product_id)
        product = catalog.product(raw)
        if product is None:
            raise ArgumentError("There is no product with that id; use an id from search_products, like 'store:i1234'.")
        if not product.is_purchasable:
            raise ArgumentError(f"{product.name!r} has no price and cannot be bought now; choose another product.")
        return product

    def in_cart(product_id: Any) -> str:
        """The canonical id of a line; ids the catalog no longer has still name their line."""
        raw = product_id_text(product_id)
        product = catalog.product(raw)
        return product.id if product else raw

    async def cart_call(
        ctx: Context, change: Callable[[Session], Awaitable[Cart]], headline: str, *, retry_safe: bool = True
    ) -> CallToolResult:
        """Resolve the session, run one cart operation, answer; every failure becomes an isError result."""
        try:
            session = await session_of(ctx)
            cart = await change(session)
        except (ArgumentError, SessionError) as exc:
            return error_result(str(exc))
        except CartRejected as exc:
            return error_result(rejection_text(exc, max_quantity))
        except CartStorageError as exc:
            return error_result(storage_error_text(exc, retry_safe=retry_safe))
        payload = cart_payload(session, cart, catalog)
        return text_result(cart_text(payload, headline), payload)

    @server.tool(
        name="list_stores", description="List the stores: id, name, currency and product count.", annotations=READ_ONLY
    )
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
            '("" lists everything); best matches first. Optional `category` and `store` filters; paged.'
        ),
        annotations=READ_ONLY,
    )
    async def search_products(
        search: Text = "",
        category: OptionalText = None,
        store: OptionalText = None,
        page: Page = 1,
        page_size: PageSize = 12,
    ) -> CallToolResult:
        try:
            query = short_text("" if search is None else search, "search")
            wanted_category = short_text(category, "category") if category else None
            store_id = short_text(store, "store") if store else None
            if store_id is not None and store_id not in catalog.stores:
                raise ArgumentError(f"There is no store with that id; use one of {sorted(catalog.stores)}.")
            page_number = whole_number(page, "page", 1, MAX_PAGE)
            size = whole_number(page_size, "page_size", 1, MAX_PAGE_SIZE)
            found = await run_search(
                query, category=wanted_category, store_id=store_id, page=page_number, page_size=size
            )
            last_page = max(1, found.total_pages)
            if page_number > last_page:
                raise ArgumentError(
                    f"page {page_number} is past the last page ({last_page}); ask for page 1 to {last_page}."
                )
        except (ArgumentError, SearchRefused) as exc:
            return error_result(str(exc))
        return text_result(
            search_text(found, query, wanted_category, catalog), search_payload(found, query, wanted_category, store_id)
        )

    @server.tool(
        name="add_to_cart", description="Add a product to this conversation's cart (adds to its line if it is there)."
    )
    async def add_to_cart(product_id: ProductId, ctx: Context, quantity: AddQuantity = 1) -> CallToolResult:
        async def change(session: Session) -> Cart:
            product = purchasable(product_id)
            count = whole_number(quantity, "quantity", 1, max_quantity)
            assert product.price is not None  # purchasable() checked it
            return await carts.add(session.key, product.id, count, product.name, product.price)

        return await cart_call(ctx, change, "Added to the cart.", retry_safe=False)

    @server.tool(
        name="update_cart_item", description="Set the quantity of a line in this conversation's cart; 0 removes it."
    )
    async def update_cart_item(product_id: ProductId, quantity: SetQuantity, ctx: Context) -> CallToolResult:
        async def change(session: Session) -> Cart:
            line = in_cart(product_id)
            return await carts.set_quantity(session.key, line, whole_number(quantity, "quantity", 0, max_quantity))

        return await cart_call(ctx, change, "Cart updated.")

    @server.tool(name="remove_from_cart", description="Remove a product's line from this conversation's cart.")
    async def remove_from_cart(product_id: ProductId, ctx: Context) -> CallToolResult:
        async def change(session: Session) -> Cart:
            return await carts.remove(session.key, in_cart(product_id))

        return await cart_call(ctx, change, "Removed from the cart.")

    @server.tool(name="view_cart", description="Show this conversation's cart: lines and total.", annotations=READ_ONLY)
    async def view_cart(ctx: Context) -> CallToolResult:
        return await cart_call(ctx, lambda session: carts.view(session.key), "")

    @server.tool(
        name="clear_cart",
        description="Empty this conversation's cart.",
        annotations=ToolAnnotations(destructive_hint=True),
    )
    async def clear_cart(ctx: Context) -> CallToolResult:
        return await cart_call(ctx, lambda session: carts.clear(session.key), "Cart cleared.")

    if not settings.debug_tool:
        return

    @server.tool(
        name="debug_session",
        description="Show which conversation id this call was filed under and how many carts exist (no other ids).",
        annotations=READ_ONLY,
    )
    async def debug_session(ctx: Context) -> CallToolResult:
        try:
            session = await session_of(ctx)
            cart = await carts.view(session.key)
            count = await carts.counted_carts()  # one SCAN sweep per worker serves a few seconds of calls
        except SessionError as exc:
            return error_result(str(exc))
        except CartStorageError as exc:
            return error_result(storage_error_text(exc, retry_safe=True))
        # Other carts appear only as this aggregate, counted at most once per few seconds (see README).
        active = count.carts
        ago = round(count.age_seconds(carts.cart_counter.clock()), 1)
        data = {
            "session_id": session.id,
            "session_source": session.source,
            "items_in_cart": len(cart.lines),
            "active_sessions": active,
            "counted_at": count.counted_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "counted_seconds_ago": ago,
            "storage": carts.backend,
            "shared_fallback_cart": session.is_fallback,
        }
        text = (
            f"Session {session.id!r} (from {session.source}); {len(cart.lines)} line(s) in its cart; "
            f"{active} active cart(s) in {carts.backend} storage (counted {ago:g} s ago)."
        )
        if session.is_fallback:
            text += " WARNING: no conversation id was sent, so this call used the cart shared by all such calls."
        return text_result(text, data)
