"""The tools through the SDK's in-process client: answers, money, limits, and rejections that change nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client

from service.answers import (
    STORAGE_UNAVAILABLE,
    STORAGE_UNAVAILABLE_MAYBE_SAVED,
    STORAGE_UNAVAILABLE_NOT_SAVED,
    TOOL_ERRORS,
    error_answer,
)
from service.arguments import ArgumentError
from service.carts import CartRejected, CartStorageError, CartStore
from service.catalog import Catalog, SearchRefused, build_store, load_catalog
from service.config import Settings
from service.sessions import SessionError
from service.tools import Shop, create_server

CATALOG = load_catalog(None)
OATS = "demo-market:i1702"  # 18.90
TAHINI = "demo-market:i1701"  # 24.40
UNPRICED = next(p.id for p in CATALOG.stores["demo-market"].products if not p.is_purchasable)


class Chat:
    """One conversation: every call carries its sessionId in ``_meta``."""

    def __init__(self, client: Client, session_id: str | None) -> None:
        self.client = client
        self.meta = {"sessionId": session_id} if session_id else None

    async def call(self, tool: str, **arguments: Any) -> Any:
        return await self.client.call_tool(tool, arguments, meta=self.meta)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.call(tool, **arguments)
        assert not result.is_error, result.content[0].text
        assert result.content[0].text
        return result.structured_content

    async def error(self, tool: str, **arguments: Any) -> str:
        result = await self.call(tool, **arguments)
        assert result.is_error, result.structured_content
        return result.content[0].text


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[Shop]:
    settings = Settings(max_quantity=5, max_cart_lines=3, _env_file=None)
    carts = CartStore.from_settings(settings)  # as the app builds it: the tools read the limits from the store
    yield Shop(catalog=CATALOG, carts=carts, settings=settings)
    await carts.aclose()


async def raw_cart(shop: Shop, session_key: str) -> dict[str, str]:
    return await shop.carts.client.hgetall(shop.carts.cart_key(session_key))


async def test_list_tools_names_and_schemas(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {
            "list_stores",
            "search_products",
            "add_to_cart",
            "update_cart_item",
            "remove_from_cart",
            "view_cart",
            "clear_cart",
            "checkout_link",
            "share_cart",
            "claim_cart",
            "debug_session",
        }
        add = tools["add_to_cart"].input_schema
        assert add["properties"]["quantity"]["type"] == "integer"
        assert add["properties"]["quantity"]["maximum"] == 5
        assert add["required"] == ["product_id"]
        assert tools["search_products"].input_schema["properties"]["page_size"]["maximum"] == 50


async def test_list_stores(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        data = await Chat(client, "a").ok("list_stores")
        assert data["stores"] == [
            {"id": "demo-market", "name": "Weft Demo Market", "currency": "ILS", "product_count": 99}
        ]


async def test_search_products_shape(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        data = await Chat(client, "a").ok("search_products", search="oats", page_size=2)
        assert set(data) == {"products", "pagination", "filters", "cart_id"}
        assert data["cart_id"] == (await Chat(client, "a").ok("view_cart"))["cart_id"]  # the conversation's cart
        assert set(data["products"][0]) == {
            "id",
            "name",
            "price",
            "category",
            "image",
            "url",
            "is_purchasable",
            "currency",
        }
        assert {p["currency"] for p in data["products"]} == {"ILS"}  # the demo store's, for formatting price
        pagination = data["pagination"]
        assert pagination["pageSize"] == 2 and pagination["currentPage"] == 1 and not pagination["hasPrev"]
        assert pagination["hasNext"] == (pagination["totalProducts"] > 2)
        assert data["filters"] == {"search": "oats", "category": None, "store": None}
        everything = await Chat(client, "a").ok("search_products", page_size=50)
        assert everything["pagination"]["totalProducts"] == 99
        unpriced = [p for p in everything["products"] if not p["is_purchasable"]]
        assert all(p["price"] is None for p in unpriced)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"search": "x" * 201}, "at most 200"),
        ({"page": 0}, "page must be"),
        ({"page": 999}, "past the last page"),
        ({"page_size": 51}, "page_size must be"),
        ({"page_size": "many"}, "page_size must be"),
        ({"store": "nope"}, "no store with that id"),
        ({"search": 5}, "must be a string"),
        ({"search": "a b c d e f g h i j k"}, "11 different words; use at most 10"),
        ({"search": "milk " * 30 + " ".join("ABCDEFGHIJ")}, "11 different words"),
    ],
)
async def test_search_rejections(shop: Shop, arguments: dict[str, Any], message: str) -> None:
    async with Client(create_server(shop)) as client:
        assert message in await Chat(client, "a").error("search_products", **arguments)


async def test_cart_flow_with_exact_money(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "conv-1")
        cart = await chat.ok("add_to_cart", product_id=OATS, quantity=3)
        assert cart["items"][0]["line_total"] == "56.70" and cart["total"] == "56.70" and cart["currency"] == "ILS"
        cart = await chat.ok("add_to_cart", product_id=TAHINI)
        assert cart["total"] == "81.10" and cart["item_count"] == 4
        assert {item["id"] for item in cart["items"]} == {OATS, TAHINI}
        assert cart["session"] == {"id": "conv-1", "source": "sessionId", "shared": False}
        cart = await chat.ok("update_cart_item", product_id=OATS, quantity=1)
        assert cart["total"] == "43.30"
        cart = await chat.ok("remove_from_cart", product_id=TAHINI)
        assert [(i["id"], i["quantity"]) for i in cart["items"]] == [(OATS, 1)]
        assert (await chat.ok("view_cart"))["total"] == "18.90"
        cart = await chat.ok("clear_cart")
        assert cart["items"] == [] and cart["total"] == "0.00"
        assert await raw_cart(shop, "conv-1") == {}


async def test_positional_id_is_accepted_and_stored_canonically(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        position = next(i for i, pid in CATALOG.stores["demo-market"].by_position.items() if pid == OATS)
        cart = await Chat(client, "c").ok("add_to_cart", product_id=f"demo-market:{position}")
        assert cart["items"][0]["id"] == OATS
        assert set(await raw_cart(shop, "c")) == {OATS, "_last_accessed"}


async def test_conversations_are_isolated(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        await Chat(client, "A").ok("add_to_cart", product_id=OATS)
        assert (await Chat(client, "B").ok("view_cart"))["items"] == []
        await Chat(client, "B").ok("add_to_cart", product_id=TAHINI)
        assert [i["id"] for i in (await Chat(client, "A").ok("view_cart"))["items"]] == [OATS]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("add_to_cart", {"product_id": "demo-market:i999999"}, "no product"),
        ("add_to_cart", {"product_id": UNPRICED}, "no price"),
        ("add_to_cart", {"product_id": OATS, "quantity": 0}, "quantity must be a whole number from 1 to 5"),
        ("add_to_cart", {"product_id": OATS, "quantity": 6}, "from 1 to 5"),
        ("add_to_cart", {"product_id": OATS, "quantity": 1.5}, "whole number"),
        ("add_to_cart", {"product_id": OATS, "quantity": True}, "whole number"),
        ("add_to_cart", {"product_id": OATS, "quantity": "two"}, "whole number"),
        ("add_to_cart", {"product_id": OATS, "quantity": 4}, "holds at most 5"),
        ("add_to_cart", {"product_id": 17}, "must be a string"),
        ("update_cart_item", {"product_id": TAHINI, "quantity": 2}, "not in the cart"),
        ("update_cart_item", {"product_id": OATS, "quantity": -1}, "from 0 to 5"),
        ("remove_from_cart", {"product_id": "_last_accessed"}, "not a product id"),
        ("remove_from_cart", {"product_id": TAHINI}, "not in the cart"),
    ],
)
async def test_rejections_change_nothing(shop: Shop, tool: str, arguments: dict[str, Any], message: str) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "strict")
        await chat.ok("add_to_cart", product_id=OATS, quantity=2)
        before = await raw_cart(shop, "strict")
        text = await chat.error(tool, **arguments)
        assert message in text
        assert text.endswith(".") and "Traceback" not in text
        assert await raw_cart(shop, "strict") == before


async def test_line_limit(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "full")
        ids = [p.id for p in CATALOG.stores["demo-market"].products if p.is_purchasable][:4]
        for product_id in ids[:3]:
            await chat.ok("add_to_cart", product_id=product_id)
        before = await raw_cart(shop, "full")
        assert "remove one" in await chat.error("add_to_cart", product_id=ids[3])
        assert await raw_cart(shop, "full") == before
        assert (await chat.ok("add_to_cart", product_id=ids[0]))["item_count"] == 4


async def test_string_and_float_quantities_are_accepted(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "lenient")
        assert (await chat.ok("add_to_cart", product_id=OATS, quantity="2"))["item_count"] == 2
        assert (await chat.ok("update_cart_item", product_id=OATS, quantity=3.0))["item_count"] == 3


async def test_fallback_session_is_shared_and_flagged() -> None:
    settings = Settings(session_fallback="default", _env_file=None)
    carts = CartStore.connect(None)
    async with Client(create_server(Shop(catalog=CATALOG, carts=carts, settings=settings))) as client:
        anonymous = Chat(client, None)
        cart = await anonymous.ok("add_to_cart", product_id=OATS)
        assert cart["session"] == {"id": "default", "source": "fallback", "shared": True}
        assert cart["cart_id"].startswith("wc_r")  # the shared cart has a cart_id too
        debug = await anonymous.ok("debug_session")
        assert debug["shared_fallback_cart"] is True and debug["session_source"] == "fallback"
        assert (await Chat(client, None).ok("view_cart"))["item_count"] == 1  # every id-less call shares it
    await carts.aclose()


async def test_reject_fallback_mode() -> None:
    settings = Settings(session_fallback="reject", _env_file=None)
    carts = CartStore.connect(None)
    async with Client(create_server(Shop(catalog=CATALOG, carts=carts, settings=settings))) as client:
        text = await Chat(client, None).error("add_to_cart", product_id=OATS)
        assert "conversation id" in text
        assert await carts.count_carts() == 0
        assert (await Chat(client, "named").ok("add_to_cart", product_id=OATS))["item_count"] == 1
    await carts.aclose()


async def test_debug_session_counts_without_leaking(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        await Chat(client, "secret-other-conversation").ok("add_to_cart", product_id=OATS)
        me = Chat(client, "me")
        mine = await me.ok("add_to_cart", product_id=TAHINI)
        result = await me.call("debug_session")
        data = dict(result.structured_content)
        counted_at, ago = data.pop("counted_at"), data.pop("counted_seconds_ago")
        assert data == {
            "session_id": "me",
            "cart_id": mine["cart_id"],
            "session_source": "sessionId",
            "items_in_cart": 1,
            "active_sessions": 2,
            "storage": "embedded",
            "shared_fallback_cart": False,
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", counted_at) and 0 <= ago < 5, (counted_at, ago)
        assert "counted" in result.content[0].text
        assert "secret" not in result.content[0].text and "secret" not in str(data)


async def test_debug_tool_can_be_removed() -> None:
    settings = Settings(debug_tool=False, _env_file=None)
    carts = CartStore.connect(None)
    async with Client(create_server(Shop(catalog=CATALOG, carts=carts, settings=settings))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "debug_session" not in names and "view_cart" in names
    await carts.aclose()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Error 111 connecting to 127.0.0.1:6399. Connection refused.", "nothing was saved; retry in a moment."),
        ("Connection closed by server.", "check view_cart before retrying"),
    ],
)
async def test_storage_failure_is_a_short_error(shop: Shop, message: str, expected: str) -> None:
    """A refused connect sent nothing, so "retry" is right; a dropped connection may follow a script that ran."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError(message)

    shop.carts._add = broken  # type: ignore[method-assign]
    async with Client(create_server(shop)) as client:
        assert expected in await Chat(client, "x").error("add_to_cart", product_id=OATS)


async def test_timed_out_add_says_it_may_have_been_saved(shop: Shop) -> None:
    """A script that timed out may have run: repeating an add blindly would add twice."""
    from redis.exceptions import TimeoutError as RedisTimeoutError

    async def timed_out(*args: Any, **kwargs: Any) -> Any:
        raise RedisTimeoutError("Timeout reading from socket")

    shop.carts._add = timed_out  # type: ignore[method-assign]
    shop.carts._set_quantity = timed_out  # type: ignore[method-assign]
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "x")
        assert "check view_cart before retrying" in await chat.error("add_to_cart", product_id=OATS)
        # setting a quantity is idempotent: retrying is the right advice
        assert await chat.error("update_cart_item", product_id=OATS, quantity=2) == (
            "Cart storage unavailable, retry in a moment."
        )


async def test_debug_session_answers_its_failures_like_the_cart_tools(shop: Shop) -> None:
    """debug_session goes through the one error mapping: a bad conversation id or a storage failure is one sentence."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("Connection closed by server.")

    async with Client(create_server(shop)) as client:
        bad_id = await Chat(client, "two words").error("debug_session")
        assert bad_id == await Chat(client, "two words").error("view_cart")
        assert bad_id.startswith("The conversation id in _meta['sessionId'] must be 1 to 256 visible ASCII characters")
        shop.carts._view = broken  # type: ignore[method-assign]
        assert await Chat(client, "ok").error("debug_session") == "Cart storage unavailable, retry in a moment."


@pytest.mark.parametrize(
    ("error", "retry_safe", "text"),
    [
        (ArgumentError("Send a product id."), True, "Send a product id."),
        (SessionError("Send a conversation id."), True, "Send a conversation id."),
        (SearchRefused("Use fewer words."), True, "Use fewer words."),
        (CartRejected("quantity_limit", 3), True, "A cart line holds at most 5 and this one has 3; add at most 2."),
        (
            CartRejected("line_limit", 3),
            True,
            "The cart already has 3 lines, the most it can hold; remove one before adding another.",
        ),
        (CartStorageError("x", maybe_applied=True), True, STORAGE_UNAVAILABLE),
        (CartStorageError("x", maybe_applied=True), False, STORAGE_UNAVAILABLE_MAYBE_SAVED),
        (CartStorageError("x", maybe_applied=False), False, STORAGE_UNAVAILABLE_NOT_SAVED),
    ],
)
def test_one_function_maps_every_tool_error(error: Exception, retry_safe: bool, text: str) -> None:
    assert isinstance(error, TOOL_ERRORS)
    answer = error_answer(error, max_quantity=5, retry_safe=retry_safe)
    assert answer.is_error and answer.structured_content is None
    assert [content.text for content in answer.content] == [text]  # type: ignore[union-attr]


@pytest.mark.parametrize("limit", [1, 7, 1000])
async def test_the_quantity_limit_has_one_source_the_cart_store(limit: int) -> None:
    """Schema, check and answer all use the store's max_quantity, whatever a Settings object beside it says."""
    carts = CartStore.connect(None, max_quantity=limit)
    shop = Shop(catalog=CATALOG, carts=carts, settings=Settings(max_quantity=99, _env_file=None))
    async with Client(create_server(shop)) as client:
        tools = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        assert tools["add_to_cart"]["properties"]["quantity"]["maximum"] == limit
        assert tools["update_cart_item"]["properties"]["quantity"]["maximum"] == limit
        chat = Chat(client, "one-source")
        too_many = f"quantity must be a whole number from 1 to {limit}; got a number out of range."
        assert await chat.error("add_to_cart", product_id=OATS, quantity=limit + 1) == too_many
        assert (await chat.ok("add_to_cart", product_id=OATS, quantity=limit))["item_count"] == limit
        full = f"A cart line holds at most {limit}, and this one is full."
        assert await chat.error("add_to_cart", product_id=OATS) == full
        assert f"from 0 to {limit};" in await chat.error("update_cart_item", product_id=OATS, quantity=limit + 1)
        assert [(line.product_id, line.quantity) for line in (await carts.view("one-source")).lines] == [(OATS, limit)]
    await carts.aclose()


# ---------------------------------------------------------------- scraped text and prices as clients see them

MARKUP = "<img src=x onerror=alert(1)> & <b>bold</b>"
HOSTILE_RECORDS = [
    {"name": "\x1b[31mRed\x1b[0m Tea\x07", "price": "12.50", "url": "javascript:alert(3)//-i8", "image": "data:x,1"},
    {
        "name": f"Markup {MARKUP}",
        "price": "3",
        "url": "https://shop.test/markup-i9",
        "image": "/img/m.png",
        "category": "\x1b]0;pwned\x07Drinks\x9b2J",
    },
    {
        "name": "\u202eevil\u202c \u2067iso\u2069 \u200fשלום \u200d👨‍👩‍👧 \x85tail",
        "price": "2",
        "url": "vbscript:x-i10",
        "image": "file:///etc/passwd",
    },
    {"name": "Dust", "price": "0.005", "url": "https://shop.test/dust-i11"},
    {"name": "Euro", "price": "1.299,90", "url": "//evil.test/x-i12", "image": "HTTP://cdn.test/e.png"},
]


@pytest_asyncio.fixture
async def hostile_shop() -> AsyncIterator[Shop]:
    store = build_store(HOSTILE_RECORDS, store_id="h", name="H", base_url="https://shop.test/")
    carts = CartStore.connect(None, max_quantity=99, max_lines=10)
    yield Shop(catalog=Catalog([store]), carts=carts, settings=Settings(_env_file=None))
    await carts.aclose()


async def test_catalog_text_reaches_clients_clean(hostile_shop: Shop) -> None:
    """Only http(s) links; no control characters or escape sequences; markup comes back as the same text."""
    async with Client(create_server(hostile_shop)) as client:
        result = await Chat(client, "t").call("search_products", page_size=50)
    text, products = result.content[0].text, {p["id"]: p for p in result.structured_content["products"]}
    assert products["h:i8"]["name"] == "Red Tea"
    assert (products["h:i8"]["url"], products["h:i8"]["image"]) == (None, None)
    assert products["h:i9"]["name"] == f"Markup {MARKUP}" and f"Markup {MARKUP} [h:i9]" in text
    assert products["h:i9"]["category"] == "Drinks"
    assert products["h:i9"]["image"] == "https://shop.test/img/m.png"
    assert products["h:i10"]["name"] == "evil iso \u200fשלום \u200d👨‍👩‍👧 tail"
    assert (products["h:i10"]["url"], products["h:i10"]["image"]) == (None, None)
    assert products["h:i12"]["image"] == "HTTP://cdn.test/e.png"
    for product in products.values():
        for link in (product["url"], product["image"]):
            assert link is None or link.lower().startswith(("http://", "https://")), link
    shown = text + "".join(str(p) for p in products.values())
    assert not any(ch in shown for ch in "\x1b\x07\x85\x9b\u202e\u202c\u2067\u2069"), repr(shown)


async def test_dirty_prices_are_never_bought_at_another_price(hostile_shop: Shop) -> None:
    async with Client(create_server(hostile_shop)) as client:
        chat = Chat(client, "p")
        found = {p["id"]: p for p in (await chat.ok("search_products", page_size=50))["products"]}
        assert (found["h:i11"]["price"], found["h:i11"]["is_purchasable"]) == (None, False)
        assert found["h:i12"]["price"] == "1299.90"
        assert "cannot be bought" in await chat.error("add_to_cart", product_id="h:i11", quantity=99)
        assert (await chat.ok("view_cart"))["items"] == []  # the refusal changed nothing
        cart = await chat.ok("add_to_cart", product_id="h:i12", quantity=2)
        assert cart["total"] == "2599.80"


DAMAGED_LINES = {
    "demo-market:i1101": '{"q":-3,"n":"\\u001b[31mx","p":"-5"}',
    "demo-market:i1102": '{"q":1e308,"n":"x","p":"1.00"}',
    "demo-market:i1103": "garbage",
    "demo-market:i1104": "[1,2]",
    "ZQXforeign": '{"q":1,"n":"x","p":"1.00"}',
}


async def test_a_cart_with_damaged_lines_says_so_and_keeps_working(shop: Shop) -> None:
    """Hand-written garbage lines are left out of items and totals, named once with the way to remove them;
    the shopper keeps using the readable lines, and nothing from a damaged line reaches the client."""
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "dmg")
        await chat.ok("add_to_cart", product_id=OATS, quantity=2)
        await shop.carts.client.hset(shop.carts.cart_key("dmg"), mapping=DAMAGED_LINES)
        for tool, arguments in (
            ("view_cart", {}),
            ("add_to_cart", {"product_id": OATS}),
            ("update_cart_item", {"product_id": OATS, "quantity": 2}),
        ):
            result = await chat.call(tool, **arguments)
            text, data = result.content[0].text, result.structured_content
            assert not result.is_error, text
            assert [(item["id"], item["quantity"]) for item in data["items"]] == [(OATS, 2 + (tool == "add_to_cart"))]
            assert data["damaged_lines"] == len(DAMAGED_LINES)
            assert data["item_count"] == data["items"][0]["quantity"]
            assert data["total"] == f"{18.90 * data['item_count']:.2f}"
            assert text.count("damaged") == 1 and "5 stored line(s)" in text and "clear_cart" in text, text
            assert "weft-mcp sessions purge" in text
            assert "\x1b" not in str(result) and "1e308" not in text and "retry" not in text
            await chat.ok("update_cart_item", product_id=OATS, quantity=2)


async def test_a_cart_of_only_damaged_lines_is_not_called_empty(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "only-dmg")
        await shop.carts.client.hset(shop.carts.cart_key("only-dmg"), mapping=DAMAGED_LINES)
        result = await chat.call("view_cart")
        text = result.content[0].text
        assert not result.is_error and "empty" not in text and "damaged" in text, text
        assert (result.structured_content["item_count"], result.structured_content["damaged_lines"]) == (0, 5)
        assert "damaged" in await chat.error("add_to_cart", product_id="demo-market:i1103")
        assert "damaged" in await chat.error("update_cart_item", product_id="demo-market:i1103", quantity=1)
        assert (await chat.ok("remove_from_cart", product_id="demo-market:i1103"))["damaged_lines"] == 4
        cleared = await chat.ok("clear_cart")
        assert (cleared["items"], cleared["damaged_lines"]) == ([], 0)
        assert await raw_cart(shop, "only-dmg") == {}


async def test_an_intact_cart_reports_no_damaged_lines(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        chat = Chat(client, "intact")
        cart = await chat.ok("add_to_cart", product_id=OATS)
        assert cart["damaged_lines"] == 0
        assert "damaged" not in (await chat.call("view_cart")).content[0].text


# read-only, destructive, idempotent (openWorldHint is false for all): see the table in service/tools.py
HINTS = {
    "list_stores": (True, False, True),
    "search_products": (True, False, True),
    "view_cart": (True, False, True),
    "checkout_link": (True, False, True),
    "debug_session": (True, False, True),
    "add_to_cart": (False, False, False),
    "update_cart_item": (False, True, True),
    "remove_from_cart": (False, True, True),
    "clear_cart": (False, True, True),
    "share_cart": (False, True, False),
    "claim_cart": (False, True, False),
}


async def test_every_tool_has_a_title_four_hints_and_its_output_schema(shop: Shop) -> None:
    from service.output_schemas import OUTPUT_SCHEMAS

    async with Client(create_server(shop)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == set(HINTS)
        for name, tool in tools.items():
            hints = tool.annotations
            assert tool.title and hints is not None, name
            assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == HINTS[name], name
            assert hints.open_world_hint is False, name
            assert tool.output_schema == OUTPUT_SCHEMAS[name], name
            assert tool.description and tool.description.startswith("Use "), name
            if "cart_id" in tool.input_schema["properties"]:
                assert "Pass `cart_id`" in tool.description, name
        for name in ("add_to_cart", "update_cart_item", "remove_from_cart"):
            assert "search_products" in tools[name].input_schema["properties"]["product_id"]["description"]
        for step in ("search_products", "add_to_cart", "view_cart", "checkout_link", "cart_id"):
            assert step in (client.instructions or ""), step
