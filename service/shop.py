"""What the tools do: parse the arguments, call the catalog or the carts, answer.

``Shop`` holds what every tool works on and has one method per tool; ``service.tools`` only declares
them to the MCP server. Each tool method answers (never raises) a failure in ``TOOL_ERRORS``: the
``answering`` decorator turns it into an ``isError`` result through ``error_answer``, the one
mapping, so every rejection is one sentence and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec

import anyio
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from service.answers import (
    TOOL_ERRORS,
    cart_answer,
    checkout_answer,
    claim_answer,
    debug_answer,
    error_answer,
    error_result,
    search_answer,
    share_answer,
    storage_error_text,
    stores_answer,
)
from service.arguments import MAX_PAGE, MAX_PAGE_SIZE, ArgumentError, product_id_text, short_text, whole_number
from service.auth import caller_subject
from service.cart_ids import subject_tag
from service.cart_transfers import MODES, EmptyCartError, SelfClaimError, new_claim_id
from service.carts import EMPTY_CART, Cart, CartRejected, CartStorageError, CartStore
from service.catalog import Catalog, Product, SearchPage
from service.config import Settings
from service.idempotency import idempotency_key, keyed_change
from service.server_secret import ServerSecret
from service.sessions import MINTED_SOURCE, Session, calling_session, conversation_cart_id
from service.signin_merge import merge_earlier_carts
from service.transfer_codes import code_hash, normalize

SEARCH_THREADS = 1  # searches run at once per worker, each in a thread: the event loop never waits for one

P = ParamSpec("P")


def client_address(http_request: Any) -> str:
    """The caller's address as this worker sees it (uvicorn applies WEFT_TRUSTED_PROXIES' X-Forwarded-For)."""
    client = getattr(http_request, "client", None)
    return str(client.host) if client is not None and client.host else "unknown"


ToolMethod = Callable[Concatenate["Shop", P], Awaitable[CallToolResult]]


def answering(*, retry_safe: bool = True) -> Callable[[ToolMethod[P]], ToolMethod[P]]:
    """A tool method whose ``TOOL_ERRORS`` become ``isError`` answers (``retry_safe``: see ``error_answer``)."""

    def decorate(method: ToolMethod[P]) -> ToolMethod[P]:
        @functools.wraps(method)
        async def answered(shop: Shop, *args: P.args, **kwargs: P.kwargs) -> CallToolResult:
            try:
                return await method(shop, *args, **kwargs)
            except TOOL_ERRORS as exc:
                return error_answer(exc, max_quantity=shop.max_quantity, retry_safe=retry_safe)

        return answered

    return decorate


@dataclass(frozen=True, slots=True)
class Shop:
    """What the tools work on; built once per worker by the app."""

    catalog: Catalog
    carts: CartStore
    settings: Settings
    secret: ServerSecret = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    search_threads: anyio.CapacityLimiter = field(
        init=False, repr=False, compare=False, default_factory=lambda: anyio.CapacityLimiter(SEARCH_THREADS)
    )

    def __post_init__(self) -> None:
        if self.secret is None:  # one signer per worker: the app builds one Shop per worker
            object.__setattr__(self, "secret", ServerSecret(self.settings, self.carts))

    @property
    def max_quantity(self) -> int:
        """The most one cart line holds: the cart store's own limit (``WEFT_MAX_QUANTITY``), which its scripts
        enforce, so the tools' schemas, checks and answers can never disagree with it."""
        return self.carts.max_quantity

    # ------------------------------------------------------------------ the tools

    @answering()
    async def list_stores(self) -> CallToolResult:
        return stores_answer(self.catalog)

    @answering()
    async def search_products(
        self, ctx: Context, search: Any, category: Any, store: Any, page: Any, page_size: Any, cart_id: Any = None
    ) -> CallToolResult:
        query = short_text("" if search is None else search, "search")
        wanted_category = short_text(category, "category") if category else None
        store_id = short_text(store, "store") if store else None
        if store_id is not None and store_id not in self.catalog.stores:
            raise ArgumentError(f"There is no store with that id; use one of {sorted(self.catalog.stores)}.")
        page_number = whole_number(page, "page", 1, MAX_PAGE)
        size = whole_number(page_size, "page_size", 1, MAX_PAGE_SIZE)
        found = await self.run_search(
            query, category=wanted_category, store_id=store_id, page=page_number, page_size=size
        )
        last_page = max(1, found.total_pages)
        if page_number > last_page:
            raise ArgumentError(
                f"page {page_number} is past the last page ({last_page}); ask for page 1 to {last_page}."
            )
        named = await self.search_cart_id(ctx, cart_id)
        return search_answer(found, query, wanted_category, store_id, self.catalog, named)

    @answering(retry_safe=False)  # an add that timed out may have run: retrying blindly would add twice
    async def add_to_cart(self, ctx: Context, product_id: Any, quantity: Any, cart_id: Any = None) -> CallToolResult:
        key = idempotency_key(ctx.request_context.meta)
        session = await self.session_of(ctx, cart_id, mints=True, merge=False)
        product = self.purchasable(product_id)
        count = whole_number(quantity, "quantity", 1, self.max_quantity)
        session = await self.merged(ctx, session)  # only once the arguments are good: a rejection moves nothing
        assert product.price is not None and session.key is not None  # purchasable() checked; adding mints
        change = keyed_change(key, "add_to_cart", {"cart": session.key, "product_id": product.id, "quantity": count})
        try:
            cart = await self.carts.add(session.key, product.id, count, product.name, product.price, change=change)
        except CartStorageError as exc:
            minted = session.source == MINTED_SOURCE
            if change is None and not minted:
                raise
            return error_result(storage_error_text(exc, retry_safe=False, keyed=change is not None, minted=minted))
        return self.answer(session, cart, "Added to the cart.")

    @answering()
    async def update_cart_item(
        self, ctx: Context, product_id: Any, quantity: Any, cart_id: Any = None
    ) -> CallToolResult:
        key = idempotency_key(ctx.request_context.meta)
        session = await self.session_of(ctx, cart_id, merge=False)
        line = self.in_cart(product_id)
        count = whole_number(quantity, "quantity", 0, self.max_quantity)
        if session.key is None:  # no cart named (fallback mint): nothing is in it
            raise CartRejected("not_in_cart", 0)
        target, session = session.key, await self.merged(ctx, session)  # the merge keeps the cart's key
        change = keyed_change(key, "update_cart_item", {"cart": target, "product_id": line, "quantity": count})
        cart = await self.carts.set_quantity(target, line, count, change=change)
        return self.answer(session, cart, "Cart updated.")

    @answering()
    async def remove_from_cart(self, ctx: Context, product_id: Any, cart_id: Any = None) -> CallToolResult:
        key = idempotency_key(ctx.request_context.meta)
        session = await self.session_of(ctx, cart_id, merge=False)
        line = self.in_cart(product_id)
        if session.key is None:
            raise CartRejected("not_in_cart", 0)
        target, session = session.key, await self.merged(ctx, session)
        change = keyed_change(key, "remove_from_cart", {"cart": target, "product_id": line})
        cart = await self.carts.remove(target, line, change=change)
        return self.answer(session, cart, "Removed from the cart.")

    @answering()
    async def view_cart(self, ctx: Context, cart_id: Any = None) -> CallToolResult:
        session = await self.session_of(ctx, cart_id)
        cart = EMPTY_CART if session.key is None else await self.carts.view(session.key)
        return self.answer(session, cart, "")

    @answering()
    async def clear_cart(self, ctx: Context, cart_id: Any = None) -> CallToolResult:
        key = idempotency_key(ctx.request_context.meta)
        session = await self.session_of(ctx, cart_id)
        if session.key is None:
            return self.answer(session, EMPTY_CART, "Cart cleared.")
        change = keyed_change(key, "clear_cart", {"cart": session.key})
        return self.answer(session, await self.carts.clear(session.key, change=change), "Cart cleared.")

    @answering()
    async def checkout_link(self, ctx: Context, cart_id: Any = None) -> CallToolResult:
        """Read-only: links to the stores' own carts; nothing here places an order or writes a cart."""
        session = await self.session_of(ctx, cart_id)
        cart = EMPTY_CART if session.key is None else await self.carts.view(session.key)
        return checkout_answer(session, cart, self.catalog)

    @answering()
    async def share_cart(self, ctx: Context, cart_id: Any = None) -> CallToolResult:
        """A transfer code for the cart (an idempotency key is ignored: each share is a new code)."""
        session = await self.session_of(ctx, cart_id)
        if session.key is None:  # fallback mint, nothing named: an empty cart
            raise EmptyCartError()
        secret = (await self.secret.cart_ids()).secret
        shared = await self.carts.transfers.share(session.key, secret)
        return share_answer(session, shared, self.carts.transfers.code_ttl_seconds)

    @answering()  # retrying is safe: a claim is applied once, and a retry finishes one that stopped midway
    async def claim_cart(
        self, ctx: Context, code: Any = None, from_cart_id: Any = None, mode: Any = "merge", cart_id: Any = None
    ) -> CallToolResult:
        """Move another cart's lines (named by its transfer code or its cart_id) into this one: every argument
        is checked before anything is read or written, each failure one sentence."""
        key = idempotency_key(ctx.request_context.meta)
        if mode is None:
            mode = "merge"
        if mode not in MODES:
            raise ArgumentError('mode must be "merge" (add to this cart\'s lines) or "replace" (drop them first).')
        if (code is None) == (from_cart_id is None):
            raise ArgumentError(
                "Send either code (the transfer code from share_cart) or from_cart_id (another cart's cart_id), "
                "not both and not neither."
            )
        request = ctx.request_context
        subject = caller_subject(request.request)
        cart_ids = await self.secret.cart_ids()
        hashed, source_key = "", None
        if code is not None:
            hashed = code_hash(cart_ids.secret, normalize(code))  # the shape, before Redis
        else:
            source_key = cart_ids.open(from_cart_id, None if subject is None else subject_tag(subject))
        session = await self.session_of(ctx, cart_id, mints=True, merge=False)
        if source_key == session.key:
            raise SelfClaimError()
        session = await self.merged(ctx, session)  # only once the claim is sound: a rejection moves nothing
        assert session.key is not None  # claiming mints a cart when none is named
        arguments = {"cart": session.key, "code": hashed, "from": source_key, "mode": mode}  # a code only hashed
        change = keyed_change(key, "claim_cart", arguments)
        claimed = await self.carts.transfers.claim(
            session.key,
            secret=cart_ids.secret,
            code=None if code is None else normalize(code),
            source_key=source_key,
            mode=mode,
            claim_id=change.digest if change else new_claim_id(),
            fingerprint=change.fingerprint if change else "",
            refresh=self.current_line,
            caller=f"subject:{subject}" if subject is not None else f"address:{client_address(request.request)}",
        )
        return claim_answer(session, claimed, self.catalog)

    def current_line(self, product_id: str) -> tuple[str, Decimal] | None:
        """A claimed line's name and price now (the catalog's), or None when it cannot be bought now."""
        product = self.catalog.product(product_id)
        if product is None or not product.is_purchasable or product.price is None:
            return None
        return product.name, product.price

    @answering()
    async def debug_session(self, ctx: Context, cart_id: Any = None) -> CallToolResult:
        session = await self.session_of(ctx, cart_id, merge=False)  # a look: it never moves a guest cart
        cart = EMPTY_CART if session.key is None else await self.carts.view(session.key)
        count = await self.carts.counted_carts()  # one SCAN sweep per worker serves a few seconds of calls
        # Other carts appear only as this aggregate, counted at most once per few seconds (see README).
        ago = count.age_seconds(self.carts.cart_counter.clock())
        return debug_answer(session, cart, count, ago, self.carts.backend)

    # ------------------------------------------------------------------ what the tools share

    def answer(self, session: Session, cart: Cart, headline: str) -> CallToolResult:
        """A cart answer; an anonymous shopper where signing in is offered (optional mode) hears once that it
        keeps the cart across devices."""
        hint = self.settings.auth_mode == "optional" and not session.signed_in
        return cart_answer(session, cart, self.catalog, headline, signin_hint=hint)

    async def session_of(
        self, ctx: Context, cart_id: Any = None, *, mints: bool = False, merge: bool = True
    ) -> Session:
        """The cart of this call (DESIGN.md "Which cart a call uses"); a signed-in shopper's own. ``mints``: under
        fallback ``mint`` this call may create a cart (add_to_cart). ``merge``: a signed-in shopper's earlier
        carts the call names (a guest cart, a per-conversation cart) are merged in first, reported as
        ``claimed`` (``service.signin_merge``); a search names the cart without writing."""
        request = ctx.request_context
        subject = caller_subject(request.request)
        cart_ids = await self.secret.cart_ids()
        session = await calling_session(
            request.meta,
            request.request,
            self.settings.session_fallback,
            subject,
            cart_ids=cart_ids,
            cart_id=cart_id,
            mints=mints,
            signed_in_carts=self.settings.signed_in_carts,
        )
        return await self.merged(ctx, session) if merge else session

    async def merged(self, ctx: Context, session: Session) -> Session:
        """``session`` after the sign-in merge of the earlier carts it names (see ``session_of``). A changing
        tool resolves its cart unmerged, checks its arguments, then merges: a rejected call moves nothing."""
        subject = caller_subject(ctx.request_context.request)
        if not session.merge_from or session.key is None or subject is None:
            return session
        cart_ids = await self.secret.cart_ids()
        report = await merge_earlier_carts(
            self.carts.transfers,
            session.key,
            session.merge_from,
            subject=subject,
            secret=cart_ids.secret,
            refresh=self.current_line,
        )
        return replace(session, claimed=report.as_claimed()) if report.moved_anything else session

    async def search_cart_id(self, ctx: Context, cart_id: Any) -> str | None:
        """The cart_id a search answers: the argument (checked: a bad one is the cart_id sentence), else the
        conversation's, else None. Searching needs no Redis: when the generated secret cannot be read, None."""
        request = ctx.request_context
        subject = caller_subject(request.request)
        try:
            cart_ids = await self.secret.cart_ids()
        except CartStorageError:
            return None
        if cart_id is not None:
            if subject is None:
                cart_ids.open(cart_id, None)
                return str(cart_id)
            return (await self.session_of(ctx, cart_id, merge=False)).cart_id  # the shopper's cart, unwritten
        return await conversation_cart_id(
            request.meta, request.request, subject, cart_ids, self.settings.signed_in_carts
        )

    def purchasable(self, product_id: Any) -> Product:
        """The product an id names, if it can be bought now; else ``ArgumentError``."""
        product = self.catalog.product(product_id_text(product_id))
        if product is None:
            raise ArgumentError("There is no product with that id; use an id from search_products, like 'store:i1234'.")
        if not product.is_purchasable:
            raise ArgumentError(f"{product.name!r} has no price and cannot be bought now; choose another product.")
        return product

    def in_cart(self, product_id: Any) -> str:
        """The canonical id of a line; ids the catalog no longer has still name their line."""
        raw = product_id_text(product_id)
        product = self.catalog.product(raw)
        return product.id if product else raw

    async def run_search(self, query: str, **options: Any) -> SearchPage:
        """``catalog.search`` in a worker thread: a broad query over a big catalog costs tens of ms of CPU."""
        search = functools.partial(self.catalog.search, query, **options)
        return await anyio.to_thread.run_sync(search, limiter=self.search_threads)
