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
from service.protocol_errors import PlainMethodErrors, PlainToolErrors
from service.shop import Shop
from service.transfer_codes import MAX_INPUT_LENGTH

__all__ = ["Shop", "create_server"]

INSTRUCTIONS = (
    "A shop: search_products finds products, add_to_cart and the other cart tools keep a cart. Every cart "
    "answer carries a cart_id: pass it as the cart_id argument of every later cart call and search, so the "
    "same cart is used from any chat, device or widget. Send the conversation id in _meta (sessionId) where "
    'you can. To retry a change safely, send the same _meta "idempotency-key" with it. To continue in another '
    "chat, share_cart gives a short code that claim_cart there takes."
)
PASS_CART_ID = " Pass `cart_id` from the latest cart answer once you have one."
READ_ONLY = ToolAnnotations(read_only_hint=True)

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
    register_catalog_tools(server, shop)
    register_cart_tools(server, shop)
    if shop.settings.debug_tool:
        register_debug_tool(server, shop)

    async def tool_names() -> list[str]:
        return [tool.name for tool in await server.list_tools()]

    server.middleware.append(ToolMetrics(tool_names))  # /metrics: every tool call counted and timed
    server.middleware.append(PlainMethodErrors())  # no input echoed in "Method not found" and the like
    return server


def register_catalog_tools(server: MCPServer, shop: Shop) -> None:
    @server.tool(
        name="list_stores", description="List the stores: id, name, currency and product count.", annotations=READ_ONLY
    )
    async def list_stores() -> CallToolResult:
        return await shop.list_stores()

    @server.tool(
        name="search_products",
        description=(
            "Search the catalog. Every word of `search` must match the name, category or description "
            '("" lists everything); best matches first. Optional `category` and `store` filters; paged. '
            "The answer's cart_id names the cart the call named." + PASS_CART_ID
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
    ) -> CallToolResult:
        return await shop.search_products(ctx, search, category, store, page, page_size, cart_id)


def register_cart_tools(server: MCPServer, shop: Shop) -> None:
    """The cart tools; the quantity schemas carry the cart store's limit, as the Shop's checks do."""
    add_quantity = quantity_schema(1, shop.max_quantity, "How many to add.")
    set_quantity = quantity_schema(0, shop.max_quantity, "The line's new quantity; 0 removes the line.")

    @server.tool(
        name="add_to_cart",
        description="Add a product to the cart (adds to its line if it is there); the answer names the cart's "
        "cart_id (a new cart when no cart_id or conversation id is sent)." + PASS_CART_ID,
    )
    async def add_to_cart(
        product_id: ProductId, ctx: Context, quantity: Annotated[Any, add_quantity] = 1, cart_id: CartId = None
    ) -> CallToolResult:
        return await shop.add_to_cart(ctx, product_id, quantity, cart_id)

    @server.tool(name="update_cart_item", description="Set the quantity of a cart line; 0 removes it." + PASS_CART_ID)
    async def update_cart_item(
        product_id: ProductId, quantity: Annotated[Any, set_quantity], ctx: Context, cart_id: CartId = None
    ) -> CallToolResult:
        return await shop.update_cart_item(ctx, product_id, quantity, cart_id)

    @server.tool(name="remove_from_cart", description="Remove a product's line from the cart." + PASS_CART_ID)
    async def remove_from_cart(product_id: ProductId, ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.remove_from_cart(ctx, product_id, cart_id)

    @server.tool(name="view_cart", description="Show the cart: lines and total." + PASS_CART_ID, annotations=READ_ONLY)
    async def view_cart(ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.view_cart(ctx, cart_id)

    @server.tool(
        name="clear_cart",
        description="Empty the cart." + PASS_CART_ID,
        annotations=ToolAnnotations(destructive_hint=True),
    )
    async def clear_cart(ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.clear_cart(ctx, cart_id)

    @server.tool(
        name="checkout_link",
        description="Links that open each store's own cart with this cart's lines, to review and pay there "
        "(opening one places no order; a big cart gets several links)." + PASS_CART_ID,
        annotations=READ_ONLY,
    )
    async def checkout_link(ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.checkout_link(ctx, cart_id)

    register_transfer_tools(server, shop)


def register_transfer_tools(server: MCPServer, shop: Shop) -> None:
    """share_cart and claim_cart: a cart's lines moved to another chat's cart, by a short code or a cart_id."""
    minutes = max(1, round(shop.carts.transfers.code_ttl_seconds / 60))

    @server.tool(
        name="share_cart",
        description=f"Make a transfer code (like BCDF-GHJK) for this cart, valid {minutes} minutes and once: "
        "whoever has it can move the cart's lines into their own cart with claim_cart. Sharing again replaces "
        "the previous code." + PASS_CART_ID,
    )
    async def share_cart(ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.share_cart(ctx, cart_id)

    @server.tool(
        name="claim_cart",
        description="Move another cart's lines into this cart: pass `code` (a transfer code from share_cart; case, "
        "spaces and dashes do not matter) or `from_cart_id` (that cart's cart_id), not both. The other cart is "
        'left empty. mode "merge" (default) adds to this cart\'s lines, capped at the most a line holds; '
        '"replace" drops this cart\'s own lines first. The answer lists what was capped and skipped.' + PASS_CART_ID,
    )
    async def claim_cart(
        ctx: Context,
        code: TransferCode = None,
        from_cart_id: CartId = None,
        mode: ClaimMode = "merge",
        cart_id: CartId = None,
    ) -> CallToolResult:
        return await shop.claim_cart(ctx, code, from_cart_id, mode, cart_id)


def register_debug_tool(server: MCPServer, shop: Shop) -> None:
    """``debug_session``: registered unless ``WEFT_DEBUG_TOOL=false``."""

    @server.tool(
        name="debug_session",
        description="Show which cart this call was filed under (cart_id, conversation id or fallback) and how many "
        "carts exist (no other ids).",
        annotations=READ_ONLY,
    )
    async def debug_session(ctx: Context, cart_id: CartId = None) -> CallToolResult:
        return await shop.debug_session(ctx, cart_id)
