"""Every rejection a tool answers is one sentence that names the fix, read whole through the in-process client,
and changes nothing. Paths other tests read only by a fragment are read here in full."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client

from service.cart_transfers import TAKE_ATTEMPTS
from service.carts import CartStore
from service.catalog import Catalog, build_store, load_catalog
from service.config import Settings
from service.search_index import MAX_SEARCH_DEPTH
from service.tools import Shop, create_server

CATALOG = load_catalog(None)
OATS = "demo-market:i1702"
UNPRICED = next(p for p in CATALOG.stores["demo-market"].products if not p.is_purchasable)
LAST_PAGE = -(-len(CATALOG.stores["demo-market"].products) // 12)

# tool, arguments, _meta, the whole sentence
REJECTIONS: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    (
        "add_to_cart",
        {"product_id": "demo-market:i999999"},
        None,
        "There is no product with that id; use an id from search_products, like 'store:i1234'.",
    ),
    (
        "add_to_cart",
        {"product_id": UNPRICED.id},
        None,
        f"{UNPRICED.name!r} has no price and cannot be bought now; choose another product.",
    ),
    (
        "add_to_cart",
        {"product_id": OATS, "quantity": 0},
        None,
        "quantity must be a whole number from 1 to 5; got a number out of range.",
    ),
    ("add_to_cart", {"product_id": 17}, None, "product_id must be a string; got a number out of range."),
    ("add_to_cart", {}, None, "add_to_cart needs the argument product_id; see tools/list."),
    ("update_cart_item", {}, None, "update_cart_item needs the arguments product_id, quantity; see tools/list."),
    (
        "remove_from_cart",
        {"product_id": "_last_accessed"},
        None,
        "That is not a product id; send an id from search_products or the cart, like 'store:i1234'.",
    ),
    (
        "update_cart_item",
        {"product_id": "demo-market:i1701", "quantity": 1},
        None,
        "That product is not in the cart; use add_to_cart to add it, or view_cart to see the lines.",
    ),
    ("search_products", {"store": "nope"}, None, "There is no store with that id; use one of ['demo-market']."),
    ("search_products", {"search": "x" * 201}, None, "search is 201 characters long; send at most 200."),
    ("search_products", {"category": 3}, None, "category must be a string; got a number out of range."),
    (
        "search_products",
        {"page": 999},
        None,
        f"page 999 is past the last page ({LAST_PAGE}); ask for page 1 to {LAST_PAGE}.",
    ),
    (
        "claim_cart",
        {"code": "BCDF-GHJK", "mode": "swap"},
        None,
        'mode must be "merge" (add to this cart\'s lines) or "replace" (drop them first).',
    ),
    (
        "claim_cart",
        {},
        None,
        "Send either code (the transfer code from share_cart) or from_cart_id (another cart's cart_id), "
        "not both and not neither.",
    ),
    (
        "view_cart",
        {},
        {"sessionId": 5},
        "The conversation id in _meta['sessionId'] must be a string, not int; send 1 to 256 visible ASCII characters.",
    ),
    (
        "view_cart",
        {},
        {"sessionId": "two words"},
        "The conversation id in _meta['sessionId'] must be 1 to 256 visible ASCII characters (no spaces or control "
        "characters); send a shorter or plainer id.",
    ),
]


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[Shop]:
    settings = Settings(max_quantity=5, max_cart_lines=3, _env_file=None)
    carts = CartStore.from_settings(settings)
    yield Shop(catalog=CATALOG, carts=carts, settings=settings)
    await carts.aclose()


async def stored(shop: Shop) -> dict[str, dict[str, str]]:
    """Every cart hash, by key: what a rejection must leave as it was."""
    client = shop.carts.client
    keys = sorted([key async for key in client.scan_iter(match="*") if await client.type(key) in ("hash", b"hash")])
    return {str(key): await client.hgetall(key) for key in keys}


@pytest.mark.parametrize(("tool", "arguments", "meta", "sentence"), REJECTIONS)
async def test_each_rejection_reads_its_whole_sentence_and_changes_nothing(
    shop: Shop, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None, sentence: str
) -> None:
    async with Client(create_server(shop)) as client:
        await client.call_tool("add_to_cart", {"product_id": OATS, "quantity": 2}, meta={"sessionId": "strict"})
        before = await stored(shop)
        assert before  # the cart the call must leave alone
        result = await client.call_tool(tool, arguments, meta=meta or {"sessionId": "strict"})
        assert result.is_error and result.structured_content is None
        assert result.content[0].text == sentence
        assert await stored(shop) == before


async def test_a_page_too_deep_says_to_narrow_the_search() -> None:
    records = [{"name": f"Oat bar {n}", "price": "1.00", "url": f"https://shop.test/{n}"} for n in range(1100)]
    catalog = Catalog([build_store(records, store_id="big", name="Big")])
    settings = Settings(_env_file=None)
    carts = CartStore.from_settings(settings)
    try:
        async with Client(create_server(Shop(catalog=catalog, carts=carts, settings=settings))) as client:
            result = await client.call_tool("search_products", {"search": "oat", "page": 21, "page_size": 50})
    finally:
        await carts.aclose()
    assert result.is_error
    assert result.content[0].text == (
        f"page 21 starts past the first {MAX_SEARCH_DEPTH} matches, which is as deep as a search pages; narrow the "
        "search (more words, a category or a store) to see the rest."
    )


async def test_a_source_others_keep_claiming_says_to_try_again(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each TAKE finds another chat's claim of the source in flight (finished first, then tried again): past the
    attempts, the claim gives up with its sentence, and this chat's cart and the source's code stay as they were."""
    transfers = shop.carts.transfers
    finished: list[str] = []

    async def another_claim_in_flight(*args: Any) -> tuple[str, list[str], str]:
        rival = f"{len(finished):032x}"
        return "pending", ["_to", "elsewhere", "_id", rival, "_mode", "merge", "_at", "1", "_f", ""], ""

    async def finish_it(outbox: Any, *args: Any, **kwargs: Any) -> None:
        finished.append(outbox.claim_id)

    async with Client(create_server(shop)) as client:
        await client.call_tool("add_to_cart", {"product_id": OATS, "quantity": 2}, meta={"sessionId": "strict"})
        await client.call_tool("add_to_cart", {"product_id": OATS}, meta={"sessionId": "giver"})
        shared = await client.call_tool("share_cart", {}, meta={"sessionId": "giver"})
        assert shared.structured_content is not None
        monkeypatch.setattr(transfers, "take", another_claim_in_flight)
        monkeypatch.setattr(transfers, "_complete", finish_it)
        before = await stored(shop)
        result = await client.call_tool(
            "claim_cart", {"code": shared.structured_content["code"]}, meta={"sessionId": "strict"}
        )
        assert result.is_error and result.structured_content is None
        assert result.content[0].text == "That cart is being claimed by another chat right now; try again in a moment."
        assert len(finished) == TAKE_ATTEMPTS and await stored(shop) == before
        monkeypatch.undo()
        claimed = await client.call_tool(
            "claim_cart", {"code": shared.structured_content["code"]}, meta={"sessionId": "strict"}
        )
        assert claimed.structured_content is not None and claimed.structured_content["claimed"]["lines"] == 1
