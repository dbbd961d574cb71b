"""The MCP tools of DESIGN.md, declared: name, description, annotations and argument schemas.

What each tool does is a ``Shop`` method (``service.shop``); a declaration here only passes its
arguments on. Arguments are declared with exact JSON schemas but accept any JSON value: the Shop
checks them (``service.arguments``), so every rejection is one sentence and changes nothing.
"""

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import WithJsonSchema

from service import __version__
from service.arguments import MAX_PAGE_SIZE, MAX_QUERY_LENGTH
from service.auth import AuthSetup
from service.cart_ids import MAX_CART_ID_LENGTH
from service.cart_transfers import MODES
from service.metrics import ToolMetrics
from service.output_schemas import output_type
from service.protocol_errors import PlainMethodErrors, PlainToolErrors
from service.shop import Shop
from service.transfer_codes import MAX_INPUT_LENGTH
from service.widget_views import WidgetViews

__all__ = ["Shop", "create_server"]

INSTRUCTIONS = (
    "A shop. Typical flow: search_products finds products (list_stores names the stores); add_to_cart with a "
    "product id from the search; view_cart, update_cart_item, remove_from_cart to adjust; checkout_link gives the "
    "store's own checkout (no order is placed here). Every cart answer carries a cart_id: pass it as the cart_id "
    "argument of every later call, so the same cart is used from any chat, device or widget. Send the "
    "conversation id in _meta (sessionId) where you can; to retry a change safely, send the same _meta "
    '"idempotency-key" with it. To continue in another chat, share_cart gives a short code that claim_cart '
    "there takes."
)
PASS_CART_ID = " Pass `cart_id` from the latest cart answer once you have one."
CART_BACK = " Returns the cart: lines, total, cart_id."

# The four hints of every tool, set on purpose. Nothing reaches outside this service's own stores and carts, so
# openWorldHint is false for all. The sign-in merge any call may make (a signed-in shopper's guest cart moved into
# theirs) belongs to signing in, not to a tool, so it does not make view_cart or checkout_link a writer.
#
# tool              read  destr idem  why
# list_stores       yes   no    yes   reads the catalog
# search_products   yes   no    yes   reads the catalog (names the cart, never writes it)
# view_cart         yes   no    yes   reads the cart
# checkout_link     yes   no    yes   builds links; opening one places no order and the cart is kept
# debug_session     yes   no    yes   reads the cart and a cached count
# add_to_cart       no    no    no    adds to a line: twice adds twice (an idempotency key makes a retry safe)
# update_cart_item  no    yes   yes   sets a quantity: the same call twice ends the same; 0 removes the line
# remove_from_cart  no    yes   yes   removes a line; again, it is already gone
# clear_cart        no    yes   yes   empties the cart; again, it is already empty
# share_cart        no    yes   no    each call makes a new code and revokes the earlier one
# claim_cart        no    yes   no    empties the other cart (replace also drops this cart's lines); a code works once
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
SETS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
MOVES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)

# Exact schemas for the client; the values themselves are checked by the Shop (service.arguments).
ProductId = Annotated[Any, WithJsonSchema({"type": "string", "description": "A product id from search_products."})]
Text = Annotated[Any, WithJsonSchema({"type": "string", "maxLength": MAX_QUERY_LENGTH})]
OptionalText = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_QUERY_LENGTH}, {"type": "null"}]})
]
Page = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1})]
PageSize = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE})]
CartId = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "maxLength": MAX_CART_ID_LENGTH}, {"type": "null"}],
            "description": "The cart_id of the latest cart answer (starts wc_); leave out until you have one.",
        }
    ),
]

TransferCode = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "maxLength": MAX_INPUT_LENGTH}, {"type": "null"}],
            "description": "The transfer code from share_cart, like BCDF-GHJK.",
        }
    ),
]
ClaimMode = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(MODES),
            "default": "merge",
            "description": "merge: add to this cart's lines; replace: drop them first.",
        }
    ),
]


def quantity_schema(low: int, high: int, description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high, "description": description})


def ui_meta(views: WidgetViews | None, tool: str) -> dict[str, Any] | None:
    """The tool's widget ``_meta``, declared to every client (some hosts declare no Apps support, yet render)."""
    return views.for_tool(tool) if views else None


def create_server(shop: Shop, auth: AuthSetup | None = None, views: WidgetViews | None = None) -> MCPServer:
    """The MCP server with the tools of DESIGN.md bound to ``shop``; ``auth`` turns on bearer tokens; ``views``
    (service.widget_views) adds the widgets: their resources, and the ``_meta`` of the tools that show them."""
    server = PlainToolErrors(
        name="weft",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=shop.settings.log_level,
        token_verifier=auth.verifier if auth else None,
        auth=auth.settings if auth else None,
    )
    register_catalog_tools(server, shop, views)
    register_cart_tools(server, shop, views)
    if views is not None:
        views.register(server)
    if shop.settings.debug_tool:
        register_debug_tool(server, shop)

    async def tool_names() -> list[str]:
        return [tool.name for tool in await server.list_tools()]

    server.middleware.append(ToolMetrics(tool_names))  # /metrics: every tool call counted and timed
    server.middleware.append(PlainMethodErrors())  # no input echoed in "Method not found" and the like
    return server


def register_catalog_tools(server: MCPServer, shop: Shop, views: WidgetViews | None = None) -> None:
    @server.tool(
        name="list_stores",
        title="List stores",
        description="Use to see which stores the catalog has. Returns each store's id (for search_products' `store` "
        "filter), name, currency and product count.",
        annotations=READ_ONLY,
    )
    async def list_stores() -> Annotated[CallToolResult, output_type("list_stores")]:
        return await shop.list_stores()

    @server.tool(
        name="search_products",
        meta=ui_meta(views, "search_products"),
        title="Search products",
        description=(
            "Use first, to find products to add. Every word of `search` must match the name, category or "
            'description ("" lists everything); best matches first. Optional `category` and `store` (an id from '
            "list_stores) filters; `page`/`page_size` page. Returns products (their `id` is the product_id of the "
            "cart tools), pagination and filters." + PASS_CART_ID
        ),
        annotations=READ_ONLY,
    )
    async def search_products(
        ctx: Context,
        search: Text = "",
        category: OptionalText = None,
        store: OptionalText = None,
        page: Page = 1,
        page_size: PageSize = 12,
        cart_id: CartId = None,
    ) -> Annotated[CallToolResult, output_type("search_products")]:
        return await shop.search_products(ctx, search, category, store, page, page_size, cart_id)


def register_cart_tools(server: MCPServer, shop: Shop, views: WidgetViews | None = None) -> None:
    """The cart tools; the quantity schemas carry the cart store's limit, as the Shop's checks do."""
    add_quantity = quantity_schema(1, shop.max_quantity, "How many to add.")
    set_quantity = quantity_schema(0, shop.max_quantity, "The line's new quantity; 0 removes the line.")

    @server.tool(
        name="add_to_cart",
        meta=ui_meta(views, "add_to_cart"),
        title="Add to cart",
        description="Use to put a product in the cart: `product_id` from search_products, `quantity` added to its "
        "line. Without cart_id (or a conversation id) a new cart is made." + PASS_CART_ID + CART_BACK,
        annotations=ADDS,
    )
    async def add_to_cart(
        product_id: ProductId, ctx: Context, quantity: Annotated[Any, add_quantity] = 1, cart_id: CartId = None
    ) -> Annotated[CallToolResult, output_type("add_to_cart")]:
        return await shop.add_to_cart(ctx, product_id, quantity, cart_id)

    @server.tool(
        name="update_cart_item",
        meta=ui_meta(views, "update_cart_item"),
        title="Change quantity",
        description="Use to set how many of a product the cart holds: `product_id` of a cart line, `quantity` the "
        "new amount (0 removes the line)." + PASS_CART_ID + CART_BACK,
        annotations=SETS,
    )
    async def update_cart_item(
        product_id: ProductId, quantity: Annotated[Any, set_quantity], ctx: Context, cart_id: CartId = None
    ) -> Annotated[CallToolResult, output_type("update_cart_item")]:
        return await shop.update_cart_item(ctx, product_id, quantity, cart_id)

    @server.tool(
        name="remove_from_cart",
        meta=ui_meta(views, "remove_from_cart"),
        title="Remove from cart",
        description="Use to drop a product's line from the cart (`product_id` of the line)." + PASS_CART_ID + CART_BACK,
        annotations=SETS,
    )
    async def remove_from_cart(
        product_id: ProductId, ctx: Context, cart_id: CartId = None
    ) -> Annotated[CallToolResult, output_type("remove_from_cart")]:
        return await shop.remove_from_cart(ctx, product_id, cart_id)

    @server.tool(
        name="view_cart",
        meta=ui_meta(views, "view_cart"),
        title="View cart",
        description="Use to show what is in the cart. Changes nothing." + PASS_CART_ID + CART_BACK,
        annotations=READ_ONLY,
    )
    async def view_cart(ctx: Context, cart_id: CartId = None) -> Annotated[CallToolResult, output_type("view_cart")]:
        return await shop.view_cart(ctx, cart_id)

    @server.tool(
        name="clear_cart",
        meta=ui_meta(views, "clear_cart"),
        title="Clear cart",
        description="Use to empty the cart, every line at once." + PASS_CART_ID + " Returns the empty cart.",
        annotations=SETS,
    )
    async def clear_cart(ctx: Context, cart_id: CartId = None) -> Annotated[CallToolResult, output_type("clear_cart")]:
        return await shop.clear_cart(ctx, cart_id)

    @server.tool(
        name="checkout_link",
        meta=ui_meta(views, "checkout_link"),
        title="Checkout links",
        description="Use when the shopper is ready to buy. Returns links that open each store's own cart with this "
        "cart's lines, to review and pay there (opening one places no order; a big cart gets several links)."
        + PASS_CART_ID,
        annotations=READ_ONLY,
    )
    async def checkout_link(
        ctx: Context, cart_id: CartId = None
    ) -> Annotated[CallToolResult, output_type("checkout_link")]:
        return await shop.checkout_link(ctx, cart_id)

    register_transfer_tools(server, shop, views)


def register_transfer_tools(server: MCPServer, shop: Shop, views: WidgetViews | None = None) -> None:
    """share_cart and claim_cart: a cart's lines moved to another chat's cart, by a short code or a cart_id."""
    minutes = max(1, round(shop.carts.transfers.code_ttl_seconds / 60))

    @server.tool(
        name="share_cart",
        meta=ui_meta(views, "share_cart"),
        title="Share cart",
        description=f"Use to continue this cart in another chat or device. Returns a transfer code (like BCDF-GHJK), "
        f"valid {minutes} minutes and once, for claim_cart there; sharing again replaces the previous code."
        + PASS_CART_ID,
        annotations=MOVES,
    )
    async def share_cart(ctx: Context, cart_id: CartId = None) -> Annotated[CallToolResult, output_type("share_cart")]:
        return await shop.share_cart(ctx, cart_id)

    @server.tool(
        name="claim_cart",
        meta=ui_meta(views, "claim_cart"),
        title="Claim shared cart",
        description="Use to bring another cart's lines into this cart: pass `code` (from share_cart; case, spaces "
        "and dashes do not matter) or `from_cart_id` (that cart's cart_id), not both. The other cart is left "
        'empty. mode "merge" (default) adds to this cart\'s lines, capped at the most a line holds; "replace" '
        "drops this cart's own lines first." + PASS_CART_ID + CART_BACK + " Also `claimed`: what moved, was "
        "capped or skipped.",
        annotations=MOVES,
    )
    async def claim_cart(
        ctx: Context,
        code: TransferCode = None,
        from_cart_id: CartId = None,
        mode: ClaimMode = "merge",
        cart_id: CartId = None,
    ) -> Annotated[CallToolResult, output_type("claim_cart")]:
        return await shop.claim_cart(ctx, code, from_cart_id, mode, cart_id)


def register_debug_tool(server: MCPServer, shop: Shop) -> None:
    """``debug_session``: registered unless ``WEFT_DEBUG_TOOL=false``."""

    @server.tool(
        name="debug_session",
        title="Debug session",
        description="Use when a cart seems lost. Returns which cart this call was filed under (cart_id, conversation "
        "id or the shared fallback), its line count and how many carts exist (no other ids). Changes nothing."
        + PASS_CART_ID,
        annotations=READ_ONLY,
    )
    async def debug_session(
        ctx: Context, cart_id: CartId = None
    ) -> Annotated[CallToolResult, output_type("debug_session")]:
        return await shop.debug_session(ctx, cart_id)
