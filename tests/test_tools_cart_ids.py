"""cart_ids, minted carts and idempotency keys through the SDK's in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client

from service.cart_ids import INVALID_CART_ID, CartIds
from service.carts import CartStore
from service.config import Settings
from service.idempotency import BAD_KEY, CONFLICT
from service.tools import INSTRUCTIONS, Shop, create_server
from tests.test_tools import CATALOG, OATS, TAHINI

CART_TOOLS = ("add_to_cart", "update_cart_item", "remove_from_cart", "view_cart", "clear_cart")


class Caller:
    """Calls with an optional ``_meta`` (conversation id, idempotency key) and an optional cart_id."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, meta: dict[str, Any] | None = None, **arguments: Any) -> Any:
        return await self.client.call_tool(tool, arguments, meta=meta)

    async def ok(self, tool: str, meta: dict[str, Any] | None = None, **arguments: Any) -> dict[str, Any]:
        result = await self.call(tool, meta, **arguments)
        assert not result.is_error, result.content[0].text
        return dict(result.structured_content)

    async def text(self, tool: str, meta: dict[str, Any] | None = None, **arguments: Any) -> str:
        result = await self.call(tool, meta, **arguments)
        assert not result.is_error, result.content[0].text
        return str(result.content[0].text)

    async def error(self, tool: str, meta: dict[str, Any] | None = None, **arguments: Any) -> str:
        result = await self.call(tool, meta, **arguments)
        assert result.is_error, result.structured_content
        return str(result.content[0].text)


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[Shop]:
    settings = Settings(max_quantity=5, max_cart_lines=3, _env_file=None)  # fallback mint: the default
    carts = CartStore.from_settings(settings)
    yield Shop(catalog=CATALOG, carts=carts, settings=settings)
    await carts.aclose()


async def everything(shop: Shop) -> dict[str, Any]:
    """Every key of the store and its value: to show that a call changed nothing."""
    client = shop.carts.client
    found: dict[str, Any] = {}
    async for key in client.scan_iter(match="*"):
        kind = await client.type(key)
        value = await client.hgetall(key) if kind == "hash" else await client.get(key)
        if isinstance(value, dict):
            value.pop("_last_accessed", None)
        found[key] = value
    return found


def quantities(cart: dict[str, Any]) -> dict[str, int]:
    return {item["id"]: item["quantity"] for item in cart["items"]}


async def test_descriptions_and_schemas_ask_for_cart_id(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in (*CART_TOOLS, "search_products"):
        assert "cart_id" in tools[name].input_schema["properties"], name
        assert "cart_id" not in tools[name].input_schema.get("required", []), name
        assert "Pass `cart_id`" in (tools[name].description or ""), name
    assert "cart_id" in INSTRUCTIONS and "idempotency-key" in INSTRUCTIONS


async def test_minted_cart_follows_its_cart_id(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        anyone = Caller(client)
        assert await everything(shop) == {}
        viewed = await anyone.ok("view_cart")  # no cart named: empty, writes nothing
        assert viewed["cart_id"] is None and viewed["items"] == [] and viewed["session"]["source"] == "none"
        assert (await anyone.ok("clear_cart"))["cart_id"] is None
        for tool, arguments in (
            ("update_cart_item", {"product_id": OATS, "quantity": 2}),
            ("remove_from_cart", {"product_id": OATS}),
        ):
            assert "not in the cart" in await anyone.error(tool, **arguments)
        debug = await anyone.ok("debug_session")
        assert (debug["session_source"], debug["cart_id"], debug["session_id"]) == ("none", None, None)
        assert await everything(shop) == {}

        first = await anyone.ok("add_to_cart", product_id=OATS)
        second = await anyone.ok("add_to_cart", product_id=TAHINI, quantity=2)
        assert first["session"]["source"] == "minted" and first["cart_id"].startswith("wc_c")
        assert first["cart_id"] != second["cart_id"]  # two minted carts
        text = await anyone.text("add_to_cart", product_id=OATS, cart_id=first["cart_id"])
        assert "cart_id:" not in text  # the caller already has it
        third = await anyone.call("add_to_cart", product_id=OATS)  # no cart named: yet another new cart
        cart_id_line = f"cart_id: {third.structured_content['cart_id']} (pass it as cart_id in later calls)"
        assert third.content[0].text.endswith("\n" + cart_id_line)

        again = await anyone.ok("view_cart", {"sessionId": "another-chat"}, cart_id=first["cart_id"])
        assert quantities(again) == {OATS: 2} and again["cart_id"] == first["cart_id"]
        assert again["session"]["source"] == "cart_id"
        assert quantities(await anyone.ok("view_cart", cart_id=second["cart_id"])) == {TAHINI: 2}
        carts = {key for key in await everything(shop) if ":cart:" in key}
        assert len(carts) == 3 and all(key.startswith("weft:cart:{c-") for key in carts)  # 3 adds without a cart
        assert (await anyone.ok("debug_session", cart_id=first["cart_id"]))["session_source"] == "cart_id"
        found = await anyone.ok("search_products", search="oats", cart_id=first["cart_id"])
        assert found["cart_id"] == first["cart_id"]
        assert (await anyone.ok("search_products", search="oats"))["cart_id"] is None


async def test_a_conversation_cart_reached_from_another_conversation(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        caller = Caller(client)
        added = await caller.ok("add_to_cart", {"sessionId": "phone"}, product_id=OATS, quantity=3)
        assert added["cart_id"].startswith("wc_rphone")
        cart_id = added["cart_id"]
        laptop = await caller.ok("view_cart", {"sessionId": "laptop"}, cart_id=cart_id)
        assert quantities(laptop) == {OATS: 3}
        await caller.ok("update_cart_item", product_id=OATS, quantity=1, cart_id=cart_id)  # no conversation at all
        assert quantities(await caller.ok("view_cart", {"sessionId": "phone"})) == {OATS: 1}
        assert (await caller.ok("view_cart", {"sessionId": "laptop"}))["items"] == []
        assert (await caller.ok("search_products", {"sessionId": "phone"}, search="oats"))["cart_id"] == cart_id
        await caller.ok("clear_cart", cart_id=cart_id)
        assert (await caller.ok("view_cart", {"sessionId": "phone"}))["items"] == []


@pytest.mark.parametrize("tool", [*CART_TOOLS, "search_products", "debug_session"])
async def test_bad_cart_ids_get_one_sentence_and_change_nothing(shop: Shop, tool: str) -> None:
    arguments = {"product_id": OATS} if tool in ("add_to_cart", "update_cart_item", "remove_from_cart") else {}
    if tool == "update_cart_item":
        arguments["quantity"] = 1
    async with Client(create_server(shop)) as client:
        caller = Caller(client)
        real = (await caller.ok("add_to_cart", {"sessionId": "victim"}, product_id=OATS))["cart_id"]
        before = await everything(shop)
        forged = CartIds(b"x" * 32).issue("victim")
        for bad in (real[:-1] + ("A" if real[-1] != "A" else "B"), real[:-3], forged, "wc_", "victim", 7, "w" * 500):
            text = await caller.error(tool, {"sessionId": "victim"}, cart_id=bad, **arguments)
            assert text == INVALID_CART_ID
        assert await everything(shop) == before


async def test_idempotent_add_replays_and_conflicts(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        caller = Caller(client)
        meta = {"sessionId": "retry", "idempotency-key": "add-oats-1"}
        first = await caller.ok("add_to_cart", meta, product_id=OATS, quantity=2)
        assert quantities(first) == {OATS: 2} and "replayed" not in first
        again = await caller.call(
            "add_to_cart", {"sessionId": "retry", "idempotency-key": "add-oats-1"}, product_id=OATS, quantity=2
        )
        assert again.structured_content["replayed"] is True and quantities(again.structured_content) == {OATS: 2}
        assert "nothing changed" in again.content[0].text
        before = await everything(shop)
        assert await caller.error("add_to_cart", meta, product_id=OATS, quantity=1) == CONFLICT
        assert await caller.error("add_to_cart", meta, product_id=TAHINI, quantity=2) == CONFLICT
        assert await everything(shop) == before
        # Per cart: the same key on another cart is a new change there.
        assert quantities(
            await caller.ok(
                "add_to_cart", {"sessionId": "other", "idempotency-key": "add-oats-1"}, product_id=OATS, quantity=2
            )
        ) == {OATS: 2}
        # update, remove and clear take keys too.
        upd = {"sessionId": "retry", "idempotency-key": "upd-1"}
        assert quantities(await caller.ok("update_cart_item", upd, product_id=OATS, quantity=4)) == {OATS: 4}
        await caller.ok("add_to_cart", {"sessionId": "retry"}, product_id=OATS)
        assert (await caller.ok("update_cart_item", upd, product_id=OATS, quantity=4))["replayed"] is True
        assert quantities(await caller.ok("view_cart", {"sessionId": "retry"})) == {OATS: 5}
        clr = {"sessionId": "retry", "idempotency-key": "clr-1"}
        await caller.ok("clear_cart", clr)
        await caller.ok("add_to_cart", {"sessionId": "retry"}, product_id=TAHINI)
        assert (await caller.ok("clear_cart", clr))["replayed"] is True
        assert quantities(await caller.ok("view_cart", {"sessionId": "retry"})) == {TAHINI: 1}


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ü", 42, ["k"], {"k": 1}, True])
async def test_bad_idempotency_keys_get_one_sentence_and_change_nothing(shop: Shop, bad: Any) -> None:
    async with Client(create_server(shop)) as client:
        caller = Caller(client)
        await caller.ok("add_to_cart", {"sessionId": "keys"}, product_id=OATS)
        before = await everything(shop)
        for tool, arguments in (
            ("add_to_cart", {"product_id": OATS}),
            ("update_cart_item", {"product_id": OATS, "quantity": 3}),
            ("remove_from_cart", {"product_id": OATS}),
            ("clear_cart", {}),
        ):
            text = await caller.error(tool, {"sessionId": "keys", "idempotency-key": bad}, **arguments)
            assert text == BAD_KEY
        assert await everything(shop) == before
        assert (await caller.ok("view_cart", {"sessionId": "keys", "idempotency-key": bad}))["item_count"] == 1


async def test_reject_mode_names_cart_id(shop: Shop) -> None:
    settings = Settings(session_fallback="reject", _env_file=None)
    carts = CartStore.connect(None)
    async with Client(create_server(Shop(catalog=CATALOG, carts=carts, settings=settings))) as client:
        caller = Caller(client)
        assert "cart_id" in await caller.error("view_cart")
        cart_id = (await caller.ok("add_to_cart", {"sessionId": "named"}, product_id=OATS))["cart_id"]
        assert (await caller.ok("view_cart", cart_id=cart_id))["item_count"] == 1  # a cart_id is enough
        assert (await caller.ok("search_products", search="oats"))["cart_id"] is None  # search never rejects
    await carts.aclose()


async def test_a_keyed_add_that_may_have_run_says_retrying_is_safe(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import TimeoutError as RedisTimeout

    async with Client(create_server(shop)) as client:
        caller = Caller(client)
        await caller.ok("view_cart", {"sessionId": "slow"})

        async def times_out(*args: Any, **kwargs: Any) -> Any:
            raise RedisTimeout("Timeout reading from socket")

        monkeypatch.setattr(shop.carts, "_add", times_out)
        keyed = await caller.error("add_to_cart", {"sessionId": "slow", "idempotency-key": "k"}, product_id=OATS)
        assert "retrying with the same idempotency-key is safe" in keyed
        plain = await caller.error("add_to_cart", {"sessionId": "slow"}, product_id=OATS)
        assert "check view_cart before retrying" in plain


async def test_a_minted_add_that_may_have_run_promises_no_safe_retry(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no cart named, the add mints a new cart: if its answer is lost, a retry (keyed or not) mints another,
    and view_cart without a cart_id sees nothing, so the answer must not advise either."""
    from redis.exceptions import TimeoutError as RedisTimeout

    async with Client(create_server(shop)) as client:
        caller = Caller(client)

        async def times_out(*args: Any, **kwargs: Any) -> Any:
            raise RedisTimeout("Timeout reading from socket")

        monkeypatch.setattr(shop.carts, "_add", times_out)
        for meta in ({"idempotency-key": "mint-k"}, {}):
            text = await caller.error("add_to_cart", meta, product_id=OATS)
            assert "is safe" not in text and "check view_cart" not in text, text
            assert "new cart" in text and "cart_id" in text, text
