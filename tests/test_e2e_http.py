"""End to end over real HTTP: ``weft-mcp serve`` processes on a real Redis, driven by the SDK client,
by raw JSON-RPC the way a plain script sends it, and by two client OS processes at once."""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from mcp import Client

from harness.processes import RedisProcess, ServeProcess
from tests.jsonrpc import JSON_HEADERS, add_burst, tool_call_message
from tests.redis_server import require_redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

TOOL_NAMES = {
    "list_stores",
    "search_products",
    "add_to_cart",
    "update_cart_item",
    "remove_from_cart",
    "view_cart",
    "clear_cart",
    "share_cart",
    "claim_cart",
    "debug_session",
    "checkout_link",
}
HASHED_KEY = re.compile(r"^(?P<prefix>.+):cart:\{h-[0-9a-f]{32}\}$")


def new_prefix() -> str:
    return f"weft-e2e-{uuid.uuid4().hex[:12]}"


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- raw JSON-RPC helpers


def rpc(url: str, message: Mapping[str, Any], headers: Mapping[str, str] = JSON_HEADERS) -> dict[str, Any]:
    response = httpx.post(url, json=dict(message), headers=dict(headers), timeout=10.0)
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body.get("jsonrpc") == "2.0" and "result" in body, body
    return body


def call(
    server: ServeProcess,
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    envelope_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``tools/call``; returns the JSON-RPC ``result`` (content, structuredContent, isError)."""
    message = tool_call_message(name, arguments, meta=meta, envelope_meta=envelope_meta)
    return rpc(server.mcp_url, message)["result"]


def text_of(result: Mapping[str, Any]) -> str:
    return result["content"][0]["text"]


def ok(result: Mapping[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, text_of(result)
    return result["structuredContent"]


def cart_quantities(cart: Mapping[str, Any]) -> dict[str, int]:
    return {item["id"]: item["quantity"] for item in cart["items"]}


def keys_under(client: redis.Redis, prefix: str) -> set[str]:
    """Every key under the prefix but the generated server secret (written once at start, by no call)."""
    return set(client.scan_iter(match=f"{prefix}:*", count=1000)) - {f"{prefix}:secret", f"{prefix}:xfer-sweep"}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def module_prefix() -> str:
    return new_prefix()


@pytest.fixture(scope="module")
def server(redis_url: str, module_prefix: str) -> Iterator[ServeProcess]:
    """The module's shared server on the real Redis, fallback mode ``default`` (set: ``mint`` is the default)."""
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": module_prefix, "WEFT_SESSION_FALLBACK": "default"}
    with ServeProcess(env=env) as process:
        yield process


@pytest.fixture(scope="module")
def product_ids(server: ServeProcess) -> list[str]:
    """Purchasable product ids, found through the server itself."""
    data = ok(call(server, "search_products", {"search": "", "page_size": 50}))
    ids = [p["id"] for p in data["products"] if p["is_purchasable"]]
    assert len(ids) >= 3, data
    return ids


# ---------------------------------------------------------------- 1, 2: the SDK client in both eras


async def test_sdk_client_legacy_handshake(server: ServeProcess) -> None:
    chat_1, chat_2 = new_id("chat-1"), new_id("chat-2")
    async with Client(server.mcp_url, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == TOOL_NAMES
        assert len(tools.tools) == len(TOOL_NAMES)

        found = await client.call_tool("search_products", {"search": "oats"}, meta={"openai/session": chat_1})
        assert not found.is_error, found.content[0].text
        products = found.structured_content["products"]
        assert products, found.content[0].text
        assert all("oats" in p["name"].lower() for p in products)
        assert set(found.structured_content["pagination"]) >= {"currentPage", "totalPages", "totalProducts"}
        product = next(p for p in products if p["is_purchasable"])
        assert re.fullmatch(r"\d+\.\d\d", product["price"])

        added = await client.call_tool("add_to_cart", {"product_id": product["id"]}, meta={"openai/session": chat_1})
        assert not added.is_error, added.content[0].text
        assert cart_quantities(added.structured_content) == {product["id"]: 1}

        viewed = await client.call_tool("view_cart", {}, meta={"openai/session": chat_1})
        assert not viewed.is_error, viewed.content[0].text
        cart = viewed.structured_content
        assert cart["session"]["source"] == "openai/session"
        assert cart["session"]["id"] == chat_1
        assert cart_quantities(cart) == {product["id"]: 1}
        assert cart["total"] == product["price"]
        assert product["id"] in viewed.content[0].text

        other = await client.call_tool("view_cart", {}, meta={"openai/session": chat_2})
        assert not other.is_error, other.content[0].text
        assert other.structured_content["items"] == []
        assert other.structured_content["session"]["id"] == chat_2
        assert "empty" in other.content[0].text.lower()


async def test_sdk_client_stateless_2026_era(server: ServeProcess, product_ids: list[str]) -> None:
    chat = new_id("chat-2026")
    async with Client(server.mcp_url, mode="2026-07-28") as client:
        assert client.protocol_version == "2026-07-28"
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == TOOL_NAMES

        added = await client.call_tool(
            "add_to_cart", {"product_id": product_ids[0], "quantity": 2}, meta={"sessionId": chat}
        )
        assert not added.is_error, added.content[0].text
        viewed = await client.call_tool("view_cart", {}, meta={"sessionId": chat})
        assert not viewed.is_error, viewed.content[0].text
        assert viewed.structured_content["session"] == {"id": chat, "source": "sessionId", "shared": False}
        assert cart_quantities(viewed.structured_content) == {product_ids[0]: 2}

        other = await client.call_tool("view_cart", {}, meta={"sessionId": new_id("chat-2026-other")})
        assert not other.is_error
        assert other.structured_content["items"] == []


# ---------------------------------------------------------------- 3: raw JSON-RPC, two conversations


def test_raw_jsonrpc_two_conversations_stay_apart(redis_url: str, product_ids: list[str]) -> None:
    with ServeProcess(env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": new_prefix()}) as fresh:
        init = rpc(
            fresh.mcp_url,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "plain-script", "version": "0"},
                },
            },
        )
        assert init["result"]["protocolVersion"] == "2025-11-25"
        assert init["result"]["serverInfo"]["name"] == "weft"

        conv_a, conv_b = new_id("conv-A"), new_id("conv-B")
        product_a, product_b = product_ids[0], product_ids[1]

        added = ok(call(fresh, "add_to_cart", {"product_id": product_a}, meta={"sessionId": conv_a}))
        assert cart_quantities(added) == {product_a: 1}

        b_view = ok(call(fresh, "view_cart", meta={"sessionId": conv_b}))
        assert b_view["items"] == [] and b_view["session"]["id"] == conv_b

        b_added = ok(call(fresh, "add_to_cart", {"product_id": product_b}, meta={"sessionId": conv_b}))
        assert cart_quantities(b_added) == {product_b: 1}

        a_view = ok(call(fresh, "view_cart", meta={"sessionId": conv_a}))
        assert cart_quantities(a_view) == {product_a: 1}

        for mine, theirs in ((conv_a, conv_b), (conv_b, conv_a)):
            result = call(fresh, "debug_session", meta={"sessionId": mine})
            data = ok(result)
            assert data["session_id"] == mine
            assert data["session_source"] == "sessionId"
            assert data["items_in_cart"] == 1
            assert data["active_sessions"] == 2
            assert data["storage"] == "redis"
            assert data["shared_fallback_cart"] is False
            everything = json.dumps(result)
            assert theirs not in everything
            assert theirs[:8] + theirs[-4:] not in everything


# ---------------------------------------------------------------- 4: every session-id source


@pytest.mark.parametrize(
    ("meta", "envelope_meta", "expected_id", "expected_source"),
    [
        ({"sessionId": "sid-1"}, None, "sid-1", "sessionId"),
        ({"conversationId": "cid-1"}, None, "cid-1", "conversationId"),
        ({"openai/session": "oai-1"}, None, "oai-1", "openai/session"),
        (None, {"sessionId": "env-1"}, "env-1", "envelope:sessionId"),
        (None, {"conversationId": "env-c-1"}, "env-c-1", "envelope:conversationId"),
        ({"sessionId": "sid-2", "conversationId": "cid-2", "openai/session": "oai-2"}, None, "sid-2", "sessionId"),
        ({"conversationId": "cid-3", "openai/session": "oai-3"}, None, "cid-3", "conversationId"),
        ({"openai/session": "oai-4"}, {"sessionId": "env-4"}, "oai-4", "openai/session"),
        ({"progressToken": 7}, {"sessionId": "env-5"}, "env-5", "envelope:sessionId"),
    ],
    ids=[
        "sessionId",
        "conversationId",
        "openai",
        "envelope",
        "envelope-conv",
        "all-three",
        "conv-over-openai",
        "params-over-envelope",
        "other-params-meta",
    ],
)
def test_session_source_over_http(
    server: ServeProcess,
    meta: dict[str, Any] | None,
    envelope_meta: dict[str, Any] | None,
    expected_id: str,
    expected_source: str,
) -> None:
    data = ok(call(server, "debug_session", meta=meta, envelope_meta=envelope_meta))
    assert data["session_id"] == expected_id
    assert data["session_source"] == expected_source
    assert data["shared_fallback_cart"] is False


def test_no_session_id_falls_back_to_default_with_warning(server: ServeProcess) -> None:
    result = call(server, "debug_session")
    data = ok(result)
    assert data["session_id"] == "default"
    assert data["session_source"] == "fallback"
    assert data["shared_fallback_cart"] is True
    assert "WARNING" in text_of(result)
    view = ok(call(server, "view_cart"))
    assert view["session"] == {"id": "default", "source": "fallback", "shared": True}
    deadline = time.monotonic() + 2
    while not re.search(r"WARNING .*No conversation id", server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(r"WARNING .*No conversation id", server.log_text()), server.log_text()[-2000:]


def test_explicit_id_default_is_not_the_shared_fallback_cart(server: ServeProcess, product_ids: list[str]) -> None:
    ok(call(server, "clear_cart", meta={"sessionId": "default"}))
    ok(call(server, "add_to_cart", {"product_id": product_ids[0]}))  # no id: the shared fallback cart
    view = ok(call(server, "view_cart", meta={"sessionId": "default"}))
    assert view["session"]["shared"] is False
    assert view["items"] == [], "a conversation that calls itself 'default' sees the id-less callers' cart"


def test_reject_mode_refuses_calls_without_an_id(
    redis_url: str, redis_client: redis.Redis, product_ids: list[str]
) -> None:
    prefix = new_prefix()
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix, "WEFT_SESSION_FALLBACK": "reject"}
    with ServeProcess(env=env) as strict:
        for name, arguments in (
            ("add_to_cart", {"product_id": product_ids[0]}),
            ("view_cart", {}),
            ("debug_session", {}),
        ):
            result = call(strict, name, arguments)
            assert result["isError"] is True, result
            assert "conversation id" in text_of(result)
            assert "Traceback" not in text_of(result)
        assert keys_under(redis_client, prefix) == set()

        chat = new_id("real")
        view = ok(call(strict, "view_cart", meta={"sessionId": chat}))
        assert view["items"] == [] and view["session"]["source"] == "sessionId"
        added = ok(call(strict, "add_to_cart", {"product_id": product_ids[0]}, meta={"sessionId": chat}))
        assert cart_quantities(added) == {product_ids[0]: 1}
        assert keys_under(redis_client, prefix) == {f"{prefix}:cart:{{{chat}}}"}


# ---------------------------------------------------------------- 5: unsafe and invalid ids


@pytest.mark.parametrize(
    "session_id",
    ["glob*star", "hash{tag}", "what?", "class[ab]", "back\\slash", "h-looks-hashed", "x" * 129, "*"],
    ids=["star", "braces", "question", "brackets", "backslash", "h-prefix", "129-chars", "lone-star"],
)
def test_unsafe_ids_get_hashed_keys(
    server: ServeProcess, redis_client: redis.Redis, module_prefix: str, product_ids: list[str], session_id: str
) -> None:
    # A unique tail per run keeps the module's shared prefix from mixing runs of one id.
    session_id = session_id + uuid.uuid4().hex[:6] if len(session_id) <= 120 else session_id[:-6] + uuid.uuid4().hex[:6]
    before = keys_under(redis_client, module_prefix)
    added = ok(
        call(server, "add_to_cart", {"product_id": product_ids[2], "quantity": 3}, meta={"sessionId": session_id})
    )
    assert cart_quantities(added) == {product_ids[2]: 3}
    view = ok(call(server, "view_cart", meta={"sessionId": session_id}))
    assert cart_quantities(view) == {product_ids[2]: 3}
    assert view["session"]["id"] == session_id

    new_keys = keys_under(redis_client, module_prefix) - before
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    assert new_keys == {f"{module_prefix}:cart:{{h-{digest}}}"}
    (key,) = new_keys
    assert HASHED_KEY.match(key)
    assert session_id not in key
    line = json.loads(redis_client.hget(key, product_ids[2]))
    assert line["q"] == 3

    data = ok(call(server, "debug_session", meta={"sessionId": session_id}))
    assert data["session_id"] == session_id and data["items_in_cart"] == 1
    if len(session_id) > 12:  # logs show ids shortened, never whole
        assert session_id not in server.log_text()


@pytest.mark.parametrize(
    "bad_id",
    ["has space", "x" * 300, 42, "tab\tin", "ünicode"],
    ids=["space", "300-chars", "integer", "tab", "non-ascii"],
)
def test_invalid_ids_are_refused_and_write_nothing(
    server: ServeProcess, redis_client: redis.Redis, module_prefix: str, product_ids: list[str], bad_id: Any
) -> None:
    before = {key: redis_client.hgetall(key) for key in keys_under(redis_client, module_prefix)}
    for name, arguments in (("add_to_cart", {"product_id": product_ids[0]}), ("debug_session", {})):
        result = call(server, name, arguments, meta={"sessionId": bad_id})
        assert result["isError"] is True, result
        assert "conversation id" in text_of(result)
    after = {key: redis_client.hgetall(key) for key in keys_under(redis_client, module_prefix)}
    assert set(after) == set(before)
    for key, fields in after.items():
        assert {f: v for f, v in fields.items() if f != "_last_accessed"} == {
            f: v for f, v in before[key].items() if f != "_last_accessed"
        }


# ---------------------------------------------------------------- 6: HTTP behaviour


def _raw_post_without_accept(server: ServeProcess, body: bytes, host: str | None = None) -> tuple[int, str, bytes]:
    """``http.client`` sends only what it is told (Host, Content-Length, and these): no Accept header at all."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/mcp", skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def test_http_endpoints(server: ServeProcess) -> None:
    get = httpx.get(server.mcp_url, headers={"Accept": "text/event-stream"}, timeout=5)
    assert get.status_code == 405
    assert "POST" in get.headers.get("allow", "")

    message = json.dumps(tool_call_message("list_stores", meta={"sessionId": "no-accept"})).encode()
    status, content_type, body = _raw_post_without_accept(server, message)
    assert status == 200, body
    assert content_type.startswith("application/json")
    reply = json.loads(body)
    assert reply["id"] == 1 and reply["result"]["structuredContent"]["stores"], reply

    slash = httpx.post(server.mcp_url + "/", json=tool_call_message("list_stores"), headers=JSON_HEADERS, timeout=5)
    assert slash.status_code == 200 and slash.json()["result"]["structuredContent"]["stores"]

    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"

    evil = httpx.post(
        server.mcp_url,
        json=tool_call_message("list_stores"),
        headers={**JSON_HEADERS, "Host": "shop.example.com"},
        timeout=5,
    )
    assert evil.status_code == 421


def test_allowed_hosts_setting(redis_url: str) -> None:
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": new_prefix(), "WEFT_ALLOWED_HOSTS": "shop.example.com"}
    with ServeProcess(env=env) as behind_lb:
        message = tool_call_message("list_stores", meta={"sessionId": "lb"})
        for host in ("shop.example.com", f"shop.example.com:{behind_lb.port}"):
            response = httpx.post(behind_lb.mcp_url, json=message, headers={**JSON_HEADERS, "Host": host}, timeout=5)
            assert response.status_code == 200, (host, response.text)
            assert response.json()["result"]["structuredContent"]["stores"]
        other = httpx.post(
            behind_lb.mcp_url, json=message, headers={**JSON_HEADERS, "Host": "evil.example.com"}, timeout=5
        )
        assert other.status_code == 421
        status, _, body = _raw_post_without_accept(behind_lb, json.dumps(message).encode(), host="shop.example.com")
        assert status == 200, body


# ---------------------------------------------------------------- 7: Redis outage and recovery


def test_redis_outage_is_an_error_result_and_recovers(product_ids: list[str]) -> None:
    require_redis_server("to kill and restart a Redis")
    private = RedisProcess().start()
    port = private.port
    try:
        env = {"WEFT_REDIS_URL": private.url, "WEFT_KEY_PREFIX": new_prefix()}
        with ServeProcess(env=env) as shop:
            chat = new_id("outage")
            ok(call(shop, "add_to_cart", {"product_id": product_ids[0]}, meta={"sessionId": chat}))

            private.kill()
            started = time.monotonic()
            result = call(shop, "add_to_cart", {"product_id": product_ids[0]}, meta={"sessionId": chat})
            elapsed = time.monotonic() - started
            assert result["isError"] is True, result
            assert "storage unavailable" in text_of(result).lower()
            assert "Traceback" not in text_of(result) and "Error" not in text_of(result)
            assert elapsed < 3.0, elapsed
            for name in ("view_cart", "debug_session"):
                started = time.monotonic()
                result = call(shop, name, meta={"sessionId": chat})
                assert result["isError"] is True and "storage unavailable" in text_of(result).lower(), result
                assert time.monotonic() - started < 3.0

            started = time.monotonic()
            ready = httpx.get(f"{shop.url}/readyz", timeout=5)
            assert time.monotonic() - started < 3.0
            assert ready.status_code == 503
            assert ready.json().get("reason"), ready.text
            assert shop.is_alive()
            assert httpx.get(f"{shop.url}/healthz", timeout=5).status_code == 200

            private = RedisProcess(port=port).start()
            # The Redis came back empty (no persistence); the server reconnects by itself.
            recovered = call(shop, "add_to_cart", {"product_id": product_ids[1]}, meta={"sessionId": chat})
            assert cart_quantities(ok(recovered)) == {product_ids[1]: 1}
            assert httpx.get(f"{shop.url}/readyz", timeout=5).status_code == 200
            assert shop.is_alive()
    finally:
        private.stop()


def test_hung_redis_answers_within_the_deadline(product_ids: list[str]) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP): errors still arrive in about 2 s."""
    require_redis_server("to stop a Redis")
    private = RedisProcess().start()
    assert private.process is not None
    pid = private.process.pid
    try:
        with ServeProcess(env={"WEFT_REDIS_URL": private.url, "WEFT_KEY_PREFIX": new_prefix()}) as shop:
            chat = new_id("hung")
            ok(call(shop, "view_cart", meta={"sessionId": chat}))
            os.kill(pid, signal.SIGSTOP)
            try:
                for name, arguments in (("add_to_cart", {"product_id": product_ids[0]}), ("debug_session", {})):
                    started = time.monotonic()
                    result = call(shop, name, arguments, meta={"sessionId": chat})
                    assert time.monotonic() - started < 3.0
                    assert result["isError"] is True and "storage unavailable" in text_of(result).lower(), result
                started = time.monotonic()
                ready = httpx.get(f"{shop.url}/readyz", timeout=5)
                assert time.monotonic() - started < 3.0
                assert ready.status_code == 503 and ready.json()["reason"]
            finally:
                os.kill(pid, signal.SIGCONT)
            view = ok(call(shop, "view_cart", meta={"sessionId": chat}))
            assert view["session"]["id"] == chat
            assert httpx.get(f"{shop.url}/readyz", timeout=5).status_code == 200
    finally:
        private.stop()


# ---------------------------------------------------------------- 8: workers


def test_workers_with_redis_serve(redis_url: str, redis_client: redis.Redis, product_ids: list[str]) -> None:
    prefix = new_prefix()
    with ServeProcess(
        env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}, extra_args=["--workers", "2"]
    ) as pool:
        assert httpx.get(f"{pool.url}/healthz", timeout=5).status_code == 200
        chat = new_id("workers")
        for _ in range(4):  # a few calls, so both workers are likely to answer one
            ok(call(pool, "add_to_cart", {"product_id": product_ids[0]}, meta={"sessionId": chat}))
        assert cart_quantities(ok(call(pool, "view_cart", meta={"sessionId": chat}))) == {product_ids[0]: 4}
        assert keys_under(redis_client, prefix) == {f"{prefix}:cart:{{{chat}}}"}
        # /healthz answers once the first worker is up; the second may still be starting.
        deadline = time.monotonic() + 20
        while len(started_workers(pool)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(started_workers(pool)) == 2, pool.log_text()


def started_workers(server: ServeProcess) -> set[str]:
    return set(re.findall(r"\[(\d+)\] uvicorn\.error: Started server process", server.log_text()))


# ---------------------------------------------------------------- 9: concurrency across servers and processes


def test_concurrent_adds_across_two_servers_lose_nothing(redis_url: str, product_ids: list[str]) -> None:
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": new_prefix()}
    with ServeProcess(env=env) as first, ServeProcess(env=env) as second:
        urls = [first.mcp_url, second.mcp_url]
        chat, product = new_id("race"), product_ids[0]
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(add_burst, urls, chat, product, 25, offset) for offset in (0, 1)]
            outcomes = [future.result(timeout=60) for future in futures]
        assert all(all(o) for o in outcomes) and sum(len(o) for o in outcomes) == 50, outcomes
        for shop in (first, second):
            view = ok(call(shop, "view_cart", meta={"sessionId": chat}))
            assert cart_quantities(view) == {product: 50}
            assert view["item_count"] == 50
