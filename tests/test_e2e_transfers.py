"""End to end over real HTTP (``weft-mcp serve``): share_cart and claim_cart with the SDK client and raw JSON-RPC,
on the embedded store and a real Redis; a claim across two servers on a real Redis and on a 3-primary cluster
(source and target carts on different primaries); failed claims counted across servers; the sweep in a worker."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from mcp import Client

from harness.processes import ServeProcess
from service.app import create_app
from service.cart_ids import INVALID_CART_ID
from service.cart_transfers import new_claim_id
from service.carts import CartStore
from service.config import Settings
from tests.redis_server import RedisCluster
from tests.test_e2e_http import call, cart_quantities, keys_under, new_id, new_prefix, ok

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

WRONG_CODE = "That transfer code is wrong, used or expired; ask for a new one with share_cart."
SECRET = "an-e2e-secret-of-at-least-32-characters"


def error_text(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return str(result["content"][0]["text"])


@pytest.fixture(scope="module")
def embedded_shop() -> Iterator[ServeProcess]:
    with ServeProcess(env={}) as process:
        yield process


@pytest.fixture(scope="module")
def redis_shop(redis_url: str) -> Iterator[tuple[ServeProcess, str]]:
    prefix = new_prefix()
    with ServeProcess(env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}) as process:
        yield process, prefix


@pytest.fixture(scope="module")
def products(embedded_shop: ServeProcess) -> list[str]:
    data = ok(call(embedded_shop, "search_products", {"search": "", "page_size": 50}))
    return [p["id"] for p in data["products"] if p["is_purchasable"]][:3]


@pytest.fixture(params=["embedded", "redis"])
def shop(request: pytest.FixtureRequest) -> ServeProcess:
    if request.param == "embedded":
        return request.getfixturevalue("embedded_shop")
    return request.getfixturevalue("redis_shop")[0]


async def test_sdk_client_shares_on_the_phone_and_claims_on_the_laptop(shop: ServeProcess, products: list[str]) -> None:
    phone, laptop = {"sessionId": new_id("phone")}, {"sessionId": new_id("laptop")}
    async with Client(shop.mcp_url, mode="legacy") as client:
        await client.call_tool("add_to_cart", {"product_id": products[0], "quantity": 2}, meta=phone)
        shared = await client.call_tool("share_cart", {}, meta=phone)
        assert not shared.is_error, shared.content[0].text
        code = shared.structured_content["code"]
        assert set(shared.structured_content) == {"code", "expires_at", "cart_id", "item_count"}
    async with Client(shop.mcp_url, mode="2026-07-28") as client:  # another client, another conversation
        await client.call_tool("add_to_cart", {"product_id": products[1]}, meta=laptop)
        claimed = await client.call_tool("claim_cart", {"code": code.lower()}, meta=laptop)
        assert not claimed.is_error, claimed.content[0].text
        assert cart_quantities(claimed.structured_content) == {products[0]: 2, products[1]: 1}
        assert claimed.structured_content["claimed"] == {"lines": 1, "capped": [], "skipped": []}
        again = await client.call_tool("claim_cart", {"code": code}, meta={"sessionId": new_id("third")})
        assert again.is_error and again.content[0].text == WRONG_CODE
        left = await client.call_tool("view_cart", {}, meta=phone)
        assert left.structured_content["items"] == []


def test_raw_jsonrpc_claims_by_cart_id_and_refuses_bad_input(
    redis_shop: tuple[ServeProcess, str], redis_client: redis.Redis, products: list[str]
) -> None:
    shop, prefix = redis_shop
    source = ok(call(shop, "add_to_cart", {"product_id": products[0], "quantity": 3}))  # a minted cart
    ok(call(shop, "share_cart", {"cart_id": source["cart_id"]}))
    before = keys_under(redis_client, prefix)
    stamps = {key: redis_client.hget(key, "_last_accessed") for key in before if ":cart:" in key}
    bad = [
        ({"code": "BCDF-GHJK", "mode": "swap"}, 'mode must be "merge"'),
        ({"code": "BCDF-GHJK", "from_cart_id": source["cart_id"]}, "Send either code"),
        ({}, "Send either code"),
        ({"code": "AEIO-UAEI"}, "A transfer code is 8 letters"),
        ({"from_cart_id": source["cart_id"][:-2] + "xx"}, INVALID_CART_ID),
        ({"from_cart_id": source["cart_id"], "cart_id": source["cart_id"]}, "A cart cannot claim itself"),
    ]
    for arguments, sentence in bad:
        assert error_text(call(shop, "claim_cart", arguments)).startswith(sentence), arguments
    assert keys_under(redis_client, prefix) == before  # nothing written, nothing minted, no failure counted
    assert {key: redis_client.hget(key, "_last_accessed") for key in stamps} == stamps
    claimed = ok(call(shop, "claim_cart", {"from_cart_id": source["cart_id"], "mode": "replace"}))
    assert claimed["session"]["source"] == "minted" and cart_quantities(claimed) == {products[0]: 3}
    assert cart_quantities(ok(call(shop, "view_cart", {"cart_id": source["cart_id"]}))) == {}


def test_raw_jsonrpc_idempotent_claim(redis_shop: tuple[ServeProcess, str], products: list[str]) -> None:
    shop, _ = redis_shop
    phone, laptop = {"sessionId": new_id("phone")}, {"sessionId": new_id("laptop")}
    ok(call(shop, "add_to_cart", {"product_id": products[0]}, meta=phone))
    code = ok(call(shop, "share_cart", meta=phone))["code"]
    keyed = {**laptop, "idempotency-key": new_id("claim")}
    first = ok(call(shop, "claim_cart", {"code": code}, meta=keyed))
    ok(call(shop, "add_to_cart", {"product_id": products[1]}, meta=phone))
    again = ok(call(shop, "claim_cart", {"code": code}, meta=keyed))
    assert again["replayed"] is True and cart_quantities(again) == cart_quantities(first) == {products[0]: 1}
    assert cart_quantities(ok(call(shop, "view_cart", meta=phone))) == {products[1]: 1}


def servers_on(env: dict[str, str]) -> tuple[ServeProcess, ServeProcess]:
    return ServeProcess(env=env), ServeProcess(env=env)


def test_a_claim_across_two_servers_on_redis_with_shared_failure_counts(redis_url: str, products: list[str]) -> None:
    env = {
        "WEFT_REDIS_URL": redis_url,
        "WEFT_KEY_PREFIX": new_prefix(),
        "WEFT_SECRET_KEY": SECRET,
        "WEFT_CLAIM_FAILURES_PER_CALLER": "2",
    }
    first, second = servers_on(env)
    with first, second:
        phone, laptop = {"sessionId": new_id("phone")}, {"sessionId": new_id("laptop")}
        ok(call(first, "add_to_cart", {"product_id": products[0], "quantity": 2}, meta=phone))
        code = ok(call(first, "share_cart", meta=phone))["code"]
        assert error_text(call(first, "claim_cart", {"code": "BCDF-GHJK"}, meta=laptop)) == WRONG_CODE
        assert error_text(call(second, "claim_cart", {"code": "BCDF-GHJK"}, meta=laptop)) == WRONG_CODE
        refused = error_text(call(first, "claim_cart", {"code": code}, meta=laptop))  # 127.0.0.1 has had 2
        assert refused == "Too many failed transfer-code claims; try again in 60 minutes."
        phone_cart = ok(call(first, "view_cart", meta=phone))
        claimed = ok(call(second, "claim_cart", {"from_cart_id": phone_cart["cart_id"]}, meta=laptop))
        assert cart_quantities(claimed) == {products[0]: 2}
        assert cart_quantities(ok(call(first, "view_cart", meta=laptop))) == {products[0]: 2}


def conversations_on_two_primaries(cluster: RedisCluster, prefix: str) -> tuple[str, str]:
    """Two conversation ids whose carts sit on different primaries (CLUSTER KEYSLOT and CLUSTER SLOTS)."""
    with cluster.primaries()[0] as client:
        slots = client.execute_command("CLUSTER SLOTS")

        def primary(session: str) -> int:
            slot = int(client.execute_command("CLUSTER KEYSLOT", f"{prefix}:cart:{{{session}}}"))
            return next(int(entry[2][1]) for entry in slots if int(entry[0]) <= slot <= int(entry[1]))

        phone = new_id("phone")
        laptop = next(s for s in (new_id(f"laptop{i}") for i in range(100)) if primary(s) != primary(phone))
        print(f"\nphone's cart on primary :{primary(phone)}, laptop's on :{primary(laptop)}")
        return phone, laptop


def test_a_claim_across_two_servers_on_a_cluster(redis_cluster: RedisCluster, products: list[str]) -> None:
    prefix = new_prefix()
    env = {"WEFT_REDIS_CLUSTER": "true", "WEFT_REDIS_URL": redis_cluster.url, "WEFT_KEY_PREFIX": prefix}
    phone_id, laptop_id = conversations_on_two_primaries(redis_cluster, prefix)
    phone, laptop = {"sessionId": phone_id}, {"sessionId": laptop_id}
    first, second = servers_on(env)  # the generated secret, shared through the cluster
    with first, second:
        ok(call(first, "add_to_cart", {"product_id": products[0], "quantity": 2}, meta=phone))
        ok(call(first, "add_to_cart", {"product_id": products[1]}, meta=phone))
        ok(call(second, "add_to_cart", {"product_id": products[0], "quantity": 1}, meta=laptop))
        code = ok(call(first, "share_cart", meta=phone))["code"]
        claimed = ok(call(second, "claim_cart", {"code": code.replace("-", " ")}, meta=laptop))
        assert cart_quantities(claimed) == {products[0]: 3, products[1]: 1}
        assert claimed["claimed"] == {"lines": 2, "capped": [], "skipped": []}
        assert ok(call(first, "view_cart", meta=phone))["items"] == []
        assert error_text(call(first, "claim_cart", {"code": code}, meta={"sessionId": new_id("x")})) == WRONG_CODE
    leftovers = []
    for client in redis_cluster.primaries():
        with client:
            leftovers += [key for key in client.scan_iter(match=f"{prefix}:xfer:*")]
    assert leftovers == []


def test_a_worker_finishes_a_stalled_claim_within_its_sweep(
    redis_url: str, products: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's lifespan runs the sweep: an outbox left by a dead worker is finished (interval shortened)."""
    import service.transfer_sweep as sweep

    monkeypatch.setattr(sweep, "SWEEP_INTERVAL_SECONDS", 0.2)
    prefix = new_prefix()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # create_app configures logging: put it back after
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "setswitchinterval", lambda interval: None)

    async def run() -> dict[str, int]:
        store = CartStore.connect(redis_url, key_prefix=prefix)
        try:
            await store.add("src", products[0], 2, "Old name", Decimal("1.00"))
            await store.transfers.take("src", "dst", new_claim_id(), "merge", "", "")
            await store.client.hset(store.transfers.outbox_key("src"), "_at", str(int(time.time()) - 60))
            app = create_app(Settings(redis_url=redis_url, key_prefix=prefix, _env_file=None))
            async with app.router.lifespan_context(app):
                deadline = time.monotonic() + 10
                while await store.client.exists(store.transfers.outbox_key("src")):
                    assert time.monotonic() < deadline, "the worker's sweep did not finish the outbox"
                    await asyncio.sleep(0.05)
            cart = await store.view("dst")
            return {line.product_id: line.quantity for line in cart.lines}
        finally:
            async for key in store.client.scan_iter(match=f"{prefix}:*"):
                await store.client.delete(key)
            await store.aclose()

    assert asyncio.run(run()) == {products[0]: 2}
