"""End to end over real HTTP (``weft-mcp serve``): cart_ids, minted carts and idempotency keys, with the SDK
client and raw JSON-RPC, on the embedded store and a real Redis; round trips per call; the operator's view."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from mcp import Client

from harness.processes import RedisProcess, ServeProcess
from service.cart_ids import INVALID_CART_ID, CartIds
from service.idempotency import BAD_KEY, CONFLICT
from tests.redis_server import require_redis_server
from tests.test_e2e_http import call, cart_quantities, keys_under, new_id, new_prefix, ok

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def error_text(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    return str(result["content"][0]["text"])


@pytest.fixture(scope="module")
def redis_shop(redis_url: str) -> Iterator[tuple[ServeProcess, str]]:
    """A server on the real Redis with every default (fallback mint, WEFT_SECRET_KEY unset)."""
    prefix = new_prefix()
    with ServeProcess(env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}) as process:
        yield process, prefix


@pytest.fixture(scope="module")
def embedded_shop() -> Iterator[ServeProcess]:
    with ServeProcess(env={}) as process:
        yield process


@pytest.fixture(scope="module")
def products(embedded_shop: ServeProcess) -> list[str]:
    data = ok(call(embedded_shop, "search_products", {"search": "", "page_size": 50}))
    return [p["id"] for p in data["products"] if p["is_purchasable"]][:3]


@pytest.fixture(params=["embedded", "redis"])
def shop_and_prefix(request: pytest.FixtureRequest) -> tuple[ServeProcess, str | None]:
    """Each server in turn, with its key prefix on the real Redis (None for the embedded store)."""
    if request.param == "embedded":
        return request.getfixturevalue("embedded_shop"), None
    process, prefix = request.getfixturevalue("redis_shop")
    return process, prefix


@pytest.fixture
def shop(shop_and_prefix: tuple[ServeProcess, str | None]) -> ServeProcess:
    return shop_and_prefix[0]


async def test_sdk_client_cart_id_reaches_the_cart_from_another_conversation(
    shop: ServeProcess, products: list[str]
) -> None:
    phone, laptop = new_id("phone"), new_id("laptop")
    async with Client(shop.mcp_url, mode="legacy") as client:
        added = await client.call_tool(
            "add_to_cart", {"product_id": products[0], "quantity": 2}, meta={"sessionId": phone}
        )
        assert not added.is_error, added.content[0].text
        cart_id = added.structured_content["cart_id"]
        assert cart_id.startswith("wc_r") and len(cart_id) <= 128
        assert added.content[0].text.endswith(f"cart_id: {cart_id} (pass it as cart_id in later calls)")
    async with Client(shop.mcp_url, mode="2026-07-28") as client:  # another client, another conversation
        other = await client.call_tool("view_cart", {"cart_id": cart_id}, meta={"sessionId": laptop})
        assert cart_quantities(other.structured_content) == {products[0]: 2}
        bare = await client.call_tool("add_to_cart", {"product_id": products[1], "cart_id": cart_id})  # no _meta
        assert cart_quantities(bare.structured_content) == {products[0]: 2, products[1]: 1}
        found = await client.call_tool("search_products", {"search": "", "cart_id": cart_id})
        assert found.structured_content["cart_id"] == cart_id
        mine = await client.call_tool("view_cart", {}, meta={"sessionId": laptop})
        assert mine.structured_content["items"] == []


def test_raw_jsonrpc_minted_carts(
    shop_and_prefix: tuple[ServeProcess, str | None], products: list[str], redis_client: redis.Redis
) -> None:
    shop, prefix = shop_and_prefix
    before = keys_under(redis_client, prefix) if prefix else set()
    view = ok(call(shop, "view_cart"))  # no cart named: empty, nothing written
    assert view["cart_id"] is None and view["items"] == [] and view["session"]["source"] == "none"
    assert error_text(call(shop, "remove_from_cart", {"product_id": products[0]})).startswith("That product is not")
    ok(call(shop, "clear_cart", meta={"idempotency-key": "nothing-to-clear"}))
    if prefix:
        assert keys_under(redis_client, prefix) == before
    first = ok(call(shop, "add_to_cart", {"product_id": products[0]}))
    second = ok(call(shop, "add_to_cart", {"product_id": products[1]}))
    assert first["session"]["source"] == "minted" and first["cart_id"] != second["cart_id"]
    assert cart_quantities(ok(call(shop, "view_cart", {"cart_id": first["cart_id"]}))) == {products[0]: 1}
    assert cart_quantities(ok(call(shop, "view_cart", {"cart_id": second["cart_id"]}))) == {products[1]: 1}
    debug = ok(call(shop, "debug_session", {"cart_id": first["cart_id"]}))
    assert debug["session_source"] == "cart_id" and debug["items_in_cart"] == 1
    assert ok(call(shop, "debug_session"))["session_source"] == "none"
    if prefix:
        added = keys_under(redis_client, prefix) - before
        assert len(added) == 2 and all(re.fullmatch(rf"{prefix}:cart:\{{c-[0-9a-f]{{32}}\}}", key) for key in added)


def test_bad_cart_ids_are_one_sentence_and_change_nothing(
    redis_shop: tuple[ServeProcess, str], redis_client: redis.Redis, products: list[str]
) -> None:
    shop, prefix = redis_shop
    real = ok(call(shop, "add_to_cart", {"product_id": products[0]}, meta={"sessionId": new_id("v")}))["cart_id"]
    before = {key: redis_client.hgetall(key) for key in keys_under(redis_client, prefix) if ":cart:" in key}
    bad_ids = [
        real[:-2] + ("AA" if real[-2:] != "AA" else "BB"),  # forged MAC
        real[:20],  # truncated
        CartIds(b"z" * 32).issue(shop_key(real)),  # signed with another secret
        "wc_x" + real[4:],  # unknown kind
        "not-a-cart-id",
        "w" * 300,
        12345,
    ]
    for bad in bad_ids:
        for name, arguments in (
            ("add_to_cart", {"product_id": products[0]}),
            ("update_cart_item", {"product_id": products[0], "quantity": 3}),
            ("clear_cart", {}),
            ("view_cart", {}),
            ("search_products", {"search": ""}),
        ):
            assert error_text(call(shop, name, {**arguments, "cart_id": bad})) == INVALID_CART_ID
    after = {key: redis_client.hgetall(key) for key in keys_under(redis_client, prefix) if ":cart:" in key}
    strip = lambda carts: {k: {f: v for f, v in c.items() if f != "_last_accessed"} for k, c in carts.items()}  # noqa: E731
    assert strip(after) == strip(before)


def shop_key(cart_id: str) -> str:
    """The raw conversation key an ``r`` cart_id carries in clear (only to forge one with another secret)."""
    return cart_id[4:-22]


def test_idempotent_retries_over_http(
    redis_shop: tuple[ServeProcess, str], redis_client: redis.Redis, products: list[str]
) -> None:
    shop, prefix = redis_shop
    chat, key = new_id("idem"), uuid.uuid4().hex
    meta = {"sessionId": chat, "idempotency-key": key}
    first = ok(call(shop, "add_to_cart", {"product_id": products[0], "quantity": 2}, meta=meta))
    assert cart_quantities(first) == {products[0]: 2} and "replayed" not in first
    again = call(shop, "add_to_cart", {"product_id": products[0], "quantity": 2}, meta=meta)
    assert ok(again)["replayed"] is True and cart_quantities(ok(again)) == {products[0]: 2}
    cart = f"{prefix}:cart:{{{chat}}}"
    record = f"{prefix}:idem:{{{chat}}}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    assert redis_client.exists(record) == 1 and 0 < redis_client.ttl(record) <= 86400
    assert key not in json.dumps(sorted(keys_under(redis_client, prefix)))  # the key itself is never stored
    stored = redis_client.hgetall(cart)
    assert error_text(call(shop, "add_to_cart", {"product_id": products[0], "quantity": 3}, meta=meta)) == CONFLICT
    assert error_text(call(shop, "add_to_cart", {"product_id": products[1], "quantity": 2}, meta=meta)) == CONFLICT
    assert {f: v for f, v in redis_client.hgetall(cart).items() if f != "_last_accessed"} == {
        f: v for f, v in stored.items() if f != "_last_accessed"
    }
    # The same key and arguments through the cart_id (the same cart) is the same change: replayed.
    by_id = ok(
        call(
            shop,
            "add_to_cart",
            {"product_id": products[0], "quantity": 2, "cart_id": first["cart_id"]},
            meta={"idempotency-key": key},
        )
    )
    assert by_id["replayed"] is True
    for bad in ("", "two words", "k" * 129, 42, ["x"], "ключ"):
        result = call(
            shop, "add_to_cart", {"product_id": products[0]}, meta={"sessionId": chat, "idempotency-key": bad}
        )
        assert error_text(result) == BAD_KEY
    assert cart_quantities(ok(call(shop, "view_cart", meta={"sessionId": chat}))) == {products[0]: 2}


def test_other_shoppers_cart_id_is_refused(redis_url: str, tmp_path: Path, products: list[str]) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-alice alice\ntok-bob bob\n")
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": new_prefix(), "WEFT_AUTH_TOKENS_FILE": str(tokens)}
    with ServeProcess(env=env) as shop:
        import httpx

        from tests.jsonrpc import JSON_HEADERS, tool_call_message

        def as_user(token: str, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> Any:
            headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
            response = httpx.post(shop.mcp_url, json=tool_call_message(name, arguments, meta=meta), headers=headers)
            assert response.status_code == 200, response.text
            return response.json()["result"]

        alice = ok(as_user("tok-alice", "add_to_cart", {"product_id": products[0]}))  # the account cart
        assert alice["cart_id"].startswith("wc_A")  # the account cart, bound to alice
        assert cart_quantities(ok(as_user("tok-alice", "view_cart", {"cart_id": alice["cart_id"]}))) == {products[0]: 1}
        for name in ("view_cart", "clear_cart"):
            assert error_text(as_user("tok-bob", name, {"cart_id": alice["cart_id"]})) == INVALID_CART_ID
        assert cart_quantities(ok(as_user("tok-alice", "view_cart", {"cart_id": alice["cart_id"]}))) == {products[0]: 1}


def test_round_trips_per_call_with_and_without_a_key(products: list[str]) -> None:
    """INFO commandstats of a private Redis around each call: one EVALSHA per cart call, keyed or not."""
    require_redis_server("to reset a Redis' command statistics")
    private = RedisProcess().start()
    try:
        admin = redis.Redis.from_url(private.url, decode_responses=True)
        with ServeProcess(env={"WEFT_REDIS_URL": private.url, "WEFT_KEY_PREFIX": new_prefix()}) as shop:
            cart_id = ok(call(shop, "add_to_cart", {"product_id": products[0]}))["cart_id"]
            for name in ("update_cart_item", "remove_from_cart", "clear_cart", "view_cart"):  # load every script
                call(shop, name, {"product_id": products[0], "quantity": 1, "cart_id": cart_id})
            ok(call(shop, "add_to_cart", {"product_id": products[0], "cart_id": cart_id}))
            calls: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
                ("add_to_cart", {"product_id": products[0]}, None),
                ("add_to_cart", {"product_id": products[1]}, {"idempotency-key": "k-add"}),
                ("add_to_cart", {"product_id": products[1]}, {"idempotency-key": "k-add"}),  # replayed
                ("update_cart_item", {"product_id": products[0], "quantity": 3}, None),
                ("update_cart_item", {"product_id": products[0], "quantity": 2}, {"idempotency-key": "k-upd"}),
                ("view_cart", {}, None),
                ("remove_from_cart", {"product_id": products[1]}, {"idempotency-key": "k-rm"}),
                ("search_products", {"search": "oats"}, None),
                ("clear_cart", {}, {"idempotency-key": "k-clr"}),
                ("clear_cart", {}, None),
            ]
            figures = []
            for name, arguments, meta in calls:
                admin.config_resetstat()
                assert ok(call(shop, name, {**arguments, "cart_id": cart_id}, meta=meta)) is not None
                stats = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in admin.info("commandstats").items()}
                stats.pop("config|resetstat", None)
                sent = {
                    k: v
                    for k, v in stats.items()
                    if k in ("evalsha", "eval", "del", "get", "set", "hgetall", "script|load", "scan")
                }
                client_commands = stats.get("evalsha", 0) + stats.get("eval", 0) + stats.get("script|load", 0)
                figures.append((name, bool(meta), sent))
                if name == "search_products":
                    assert stats == {}, stats  # a search touches no Redis (the secret was read at start)
                else:
                    assert stats.get("evalsha") == 1 and client_commands == 1, (name, meta, stats)
            print("\nRedis commands per call (EVALSHA = the one round trip; the rest run inside the script):")
            for name, keyed, sent in figures:
                print(f"  {name}{' (idempotency-key)' if keyed else ''}: {sent}")
        admin.close()
    finally:
        private.stop()


def test_generated_secret_is_shared_by_workers_and_restarts(
    redis_url: str, redis_client: redis.Redis, products: list[str]
) -> None:
    prefix = new_prefix()
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}
    with ServeProcess(env=env) as first:
        cart_id = ok(call(first, "add_to_cart", {"product_id": products[0]}))["cart_id"]
        assert "WEFT_SECRET_KEY is unset" in first.log_text()
        assert redis_client.exists(f"{prefix}:secret") == 1 and redis_client.ttl(f"{prefix}:secret") == -1
    with ServeProcess(env=env) as second:  # a restart (or another worker) opens the same cart_ids
        assert cart_quantities(ok(call(second, "view_cart", {"cart_id": cart_id}))) == {products[0]: 1}
    configured = {**env, "WEFT_SECRET_KEY": "k" * 40}
    with ServeProcess(env=configured) as rotated:  # a new secret: old ids stop opening ...
        assert error_text(call(rotated, "view_cart", {"cart_id": cart_id})) == INVALID_CART_ID
        assert "WEFT_SECRET_KEY is unset" not in rotated.log_text()
    generated = redis_client.get(f"{prefix}:secret")
    with ServeProcess(env={**configured, "WEFT_SECRET_KEY_PREVIOUS": generated}) as listed:  # ... unless listed
        assert cart_quantities(ok(call(listed, "view_cart", {"cart_id": cart_id}))) == {products[0]: 1}
        assert generated not in listed.log_text()


def test_operator_counts_minted_carts_and_never_shows_other_keys(
    redis_url: str, redis_client: redis.Redis, products: list[str]
) -> None:
    prefix = new_prefix()
    with ServeProcess(env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}) as fresh:
        ok(call(fresh, "add_to_cart", {"product_id": products[0]}, meta={"idempotency-key": "op-1"}))
        ok(call(fresh, "add_to_cart", {"product_id": products[1]}))
        ok(call(fresh, "view_cart"))  # writes nothing
    all_keys = set(redis_client.scan_iter(match=f"{prefix}:*"))
    kinds = {key.split(":")[1] for key in all_keys}
    # the per-worker transfer sweep's lease (service.transfer_sweep) may or may not have been taken yet
    assert kinds - {"xfer-sweep"} == {"cart", "idem", "secret"}, all_keys
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix, "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run(  # noqa: E731
        [str(Path(sys.executable).parent / "weft-mcp"), "sessions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    counted = run("count", "--json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["carts"] == 2 and json.loads(counted.stdout)["damaged"] == 0
    listed = run("list", "--json")
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and all(row["session_key"].startswith("c-") for row in rows)
    assert "idem" not in listed.stdout and "secret" not in listed.stdout
    plain = run("list")
    assert "idem" not in plain.stdout and ":secret" not in plain.stdout and plain.returncode == 0
    for key in all_keys:
        redis_client.delete(key)
