"""Hostile input over real HTTP, beyond the unsafe/invalid ids of ``test_e2e_http``: none of it may crash
the worker, reach another conversation's cart, or put raw glob text into a Redis key."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
import redis
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness.processes import ServeProcess
from tests.jsonrpc import JSON_HEADERS, tool_call_message

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

OATS = "demo-market:i1702"
TAHINI = "demo-market:i1701"
ONE_MIB = 1_048_576
# What a cart key may look like: one hash tag, and inside it only raw-safe characters.
SAFE_CART_KEY = re.compile(r"^(?P<prefix>[A-Za-z0-9_.:-]+):cart:\{[\x21-\x7e]+\}$")
GLOB_TEXT = set("*?[]\\")


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"weft-hostile-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def shop(redis_url: str, prefix: str) -> Iterator[ServeProcess]:
    with ServeProcess(env={"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix}) as process:
        yield process


@pytest.fixture(scope="module")
def bystander(shop: ServeProcess) -> dict[str, Any]:
    """A conversation with a cart, which nothing below may touch."""
    chat = f"bystander-{uuid.uuid4().hex[:8]}"
    post_message(
        shop, tool_call_message("add_to_cart", {"product_id": TAHINI, "quantity": 4}, meta={"sessionId": chat})
    )
    return {"chat": chat, "quantities": {TAHINI: 4}}


def post_raw(shop: ServeProcess, body: bytes, headers: Mapping[str, str] = JSON_HEADERS) -> httpx.Response:
    return httpx.post(shop.mcp_url, content=body, headers=dict(headers), timeout=15)


def post_message(shop: ServeProcess, message: Any) -> httpx.Response:
    return post_raw(shop, json.dumps(message).encode())


def tool_result(shop: ServeProcess, name: str, arguments: Mapping[str, Any], meta: Any = None) -> dict[str, Any]:
    message = tool_call_message(name, arguments)
    if meta is not None:
        message["params"]["_meta"] = meta
    response = post_message(shop, message)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()["result"]


def text_of(result: Mapping[str, Any]) -> str:
    return result["content"][0]["text"]


def assert_unharmed(shop: ServeProcess, client: redis.Redis, prefix: str, bystander: Mapping[str, Any]) -> None:
    """The worker still answers, the bystander's cart is as it was, and every key is a safe one."""
    assert shop.is_alive()
    assert httpx.get(f"{shop.url}/healthz", timeout=5).status_code == 200
    view = tool_result(shop, "view_cart", {}, {"sessionId": bystander["chat"]})
    assert {i["id"]: i["quantity"] for i in view["structuredContent"]["items"]} == bystander["quantities"]
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if key in (f"{prefix}:secret", f"{prefix}:xfer-sweep"):  # the generated secret; the transfer sweep lease
            continue
        assert SAFE_CART_KEY.match(key), key
        assert not GLOB_TEXT & set(key.split(":cart:", 1)[1]), key
        assert key.count("{") == key.count("}") == 1, key
    assert "Traceback" not in shop.log_text()


# ---------------------------------------------------------------- session ids


@pytest.mark.parametrize(
    "session_id",
    [
        "a:cart:{b}",  # a key separator and a hash tag: must not address another key or slot
        "}{",
        "{}",
        "weft:cart:*",
        "x]*[?\\",
        "u-0123456789abcdef.bystander",  # shaped like a user-scoped key
        "k" * 128 + ":",  # 129 characters ending in a separator
        "sid:with:colons",
        "~!@#$%^&()_+=-`|;'\",.<>/",  # every other visible ASCII punctuation mark
    ],
    ids=[
        "separator-hashtag",
        "reversed-braces",
        "empty-braces",
        "prefix-glob",
        "glob-soup",
        "user-key-shape",
        "129-separator",
        "colons",
        "punctuation",
    ],
)
def test_hostile_session_ids_get_their_own_safe_cart(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], session_id: str
) -> None:
    before = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    added = tool_result(shop, "add_to_cart", {"product_id": OATS, "quantity": 2}, {"sessionId": session_id})
    assert not added.get("isError"), text_of(added)
    assert {i["id"]: i["quantity"] for i in added["structuredContent"]["items"]} == {OATS: 2}
    assert added["structuredContent"]["session"]["id"] == session_id
    (new_key,) = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000)) - before
    raw_safe = not (GLOB_TEXT | set("{}")) & set(session_id) and len(session_id) <= 128 and session_id[:2] != "u-"
    assert (session_id in new_key) == raw_safe, new_key
    cleared = tool_result(shop, "clear_cart", {}, {"sessionId": session_id})
    assert not cleared.get("isError") and cleared["structuredContent"]["items"] == []
    if len(session_id) > 12:  # logs show ids shortened
        assert session_id not in shop.log_text()
    assert_unharmed(shop, redis_client, prefix, bystander)


@pytest.mark.parametrize(
    "meta",
    [
        {"sessionId": ["a", "b"]},
        {"sessionId": {"$gt": ""}},
        {"sessionId": True},
        {"sessionId": 1.5},
        {"conversationId": ""},
        {"openai/session": " " * 10},
        {"sessionId": "a\u0000b"},
        {"sessionId": "\u202eevil"},
        {"sessionId": "x" * 300},
        {"sessionId": "line\nbreak"},
    ],
    ids=["list", "object", "bool", "float", "empty", "spaces", "nul", "rtl-override", "300", "newline"],
)
def test_unusable_meta_values_are_refused_and_write_nothing(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], meta: dict[str, Any]
) -> None:
    before = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    result = tool_result(shop, "add_to_cart", {"product_id": OATS}, meta)
    assert result["isError"] is True, result
    assert "conversation id" in text_of(result) and "Traceback" not in text_of(result)
    assert set(redis_client.scan_iter(match=f"{prefix}:*", count=1000)) == before
    assert_unharmed(shop, redis_client, prefix, bystander)


def test_non_object_meta_is_ignored_not_fatal(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any]
) -> None:
    """A non-object ``params._meta`` is a JSON-RPC invalid-params error; a non-object envelope ``_meta`` is ignored."""
    for meta in ("sessionId", ["sessionId", "x"], 7):
        message = tool_call_message("view_cart", {})
        message["params"]["_meta"] = meta
        response = post_message(shop, message)
        assert response.status_code == 200, response.text
        assert response.json()["error"]["code"] == -32602, response.text  # invalid params
    message = tool_call_message("view_cart", {})
    message["_meta"] = "not-an-object"
    response = post_message(shop, message)
    assert response.status_code == 200
    assert response.json()["result"]["structuredContent"]["session"]["source"] == "none"  # fallback mint: no cart
    assert_unharmed(shop, redis_client, prefix, bystander)


# ---------------------------------------------------------------- malformed JSON-RPC, unknown tools


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"null",
        b"42",
        b'"a string"',
        b"[]",
        b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]',
        b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": 1}',
        b'{"jsonrpc": "2.0", "id": {"nested": true}, "method": "tools/list"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "x"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 123}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "view_cart", "arguments": [1]}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "no/such/method"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "drop_database"}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "../../etc/passwd"}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_to_cart"}}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_to_cart",'
        b' "arguments": {"product_id": "demo-market:i1702", "quantity": 1e309}}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=[
        "empty",
        "truncated",
        "text",
        "binary",
        "null",
        "number",
        "string",
        "empty-batch",
        "batch",
        "jsonrpc-1.0",
        "no-method",
        "object-id",
        "params-string",
        "no-tool-name",
        "tool-name-number",
        "arguments-list",
        "unknown-method",
        "unknown-tool",
        "path-tool",
        "missing-argument",
        "infinite-quantity",
        "deep-array",
        "deep-object",
    ],
)
def test_malformed_requests_get_an_error_not_a_crash(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], body: bytes
) -> None:
    response = post_raw(shop, body)
    assert response.status_code in (200, 202, 400, 404, 422), (response.status_code, response.text[:300])
    assert response.status_code != 500
    if response.status_code == 200:
        reply = response.json()
        error = reply.get("error") or (reply.get("result", {}).get("isError") and reply["result"])
        assert error, reply
    assert "Traceback" not in response.text
    assert_unharmed(shop, redis_client, prefix, bystander)


MARK = "ZQX-echo-mark"  # in every body below: it must never come back in the answer


def _batch(count: int) -> bytes:
    calls = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "add_to_cart", "arguments": {"product_id": OATS}, "_meta": {"sessionId": MARK}},
        }
        for i in range(count)
    ]
    return json.dumps(calls).encode()


@pytest.mark.parametrize(
    "body",
    [
        _batch(1000),
        _batch(1),
        b'  \n\t[{"jsonrpc": "2.0", "id": 1, "method": "' + MARK.encode() + b'"}]',
        b'["' + MARK.encode() + b'"]',
        b'[1, 2, "' + MARK.encode() + b'"]',
    ],
    ids=["batch-1000", "batch-1", "batch-after-spaces", "batch-of-strings", "batch-of-mixed"],
)
def test_a_batch_gets_one_sentence_and_changes_nothing(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], body: bytes
) -> None:
    before = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for era in ({}, {"MCP-Protocol-Version": "2026-07-28"}):  # the handshake era, and stateless requests
        message = assert_one_sentence_error(post_raw(shop, body, {**JSON_HEADERS, **era}))
        assert "batch" in message.lower(), message
    assert set(redis_client.scan_iter(match=f"{prefix}:*", count=1000)) == before
    assert_unharmed(shop, redis_client, prefix, bystander)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "' + MARK.encode() + b'"}',
        b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list", "x": "' + MARK.encode() + b'"}',
        b'{"jsonrpc": 2, "id": 1, "method": "' + MARK.encode() + b'"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": 5, "x": "' + MARK.encode() + b'"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ["' + MARK.encode() + b'"]}',
        b'{"' + MARK.encode() + b'": 1}',
        b'{"jsonrpc": "2.0", "id": "' + MARK.encode() + b'"}',
        b'"' + MARK.encode() + b'"',
        b"null",
        b"42",
        b"{" + MARK.encode(),
        b'{"a": "' + MARK.encode() + b'",}',
        b"",
        b"\xff\xfe" + MARK.encode(),
    ],
    ids=[
        "params-string",
        "jsonrpc-1.0",
        "jsonrpc-number",
        "method-number",
        "params-list",
        "no-fields",
        "no-method",
        "string",
        "null",
        "number",
        "not-json",
        "trailing-comma",
        "empty",
        "binary",
    ],
)
def test_invalid_messages_get_one_sentence_that_echoes_nothing(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], body: bytes
) -> None:
    before = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for era in ({}, {"MCP-Protocol-Version": "2026-07-28"}):
        assert_one_sentence_error(post_raw(shop, body, {**JSON_HEADERS, **era}))
    assert set(redis_client.scan_iter(match=f"{prefix}:*", count=1000)) == before
    assert_unharmed(shop, redis_client, prefix, bystander)


@pytest.mark.parametrize(
    "message",
    [
        {"method": "tools/call", "params": {"name": "add_to_cart", "arguments": {}}},
        {"method": "tools/call", "params": {"name": "update_cart_item", "arguments": {"x": MARK}}},
        {"method": "tools/call", "params": {"name": "remove_from_cart", "arguments": {"cart": MARK}}},
        {"method": "tools/call", "params": {"name": MARK, "arguments": {}}},
        {"method": "tools/call", "params": {"name": f"<img src=x onerror=alert(1)>{MARK}", "arguments": {}}},
        {"method": "tools/call", "params": {"name": "add_to_cart", "arguments": {"product_id": MARK}}},
        {"method": "tools/call", "params": {"name": "add_to_cart", "arguments": {"product_id": f"s:{MARK}"}}},
        {
            "method": "tools/call",
            "params": {"name": "add_to_cart", "arguments": {"product_id": OATS, "quantity": MARK}},
        },
        {"method": "tools/call", "params": {"name": "search_products", "arguments": {"page": MARK}}},
        {"method": "tools/call", "params": {"name": "search_products", "arguments": {"store": MARK}}},
        {"method": "tools/call", "params": {"name": "search_products", "arguments": {"search": [MARK]}}},
        {"method": f"{MARK}/list", "params": {}},
        {"method": "resources/read", "params": {"uri": f"ui://{MARK}"}},
    ],
    ids=[
        "missing-argument",
        "missing-with-extra",
        "missing-with-other",
        "unknown-tool",
        "unknown-tool-markup",
        "not-a-product-id",
        "unknown-product",
        "bad-quantity",
        "bad-page",
        "unknown-store",
        "search-not-text",
        "unknown-method",
        "unknown-resource",
    ],
)
def test_errors_about_one_request_name_the_rule_not_the_input(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any], message: dict[str, Any]
) -> None:
    """A rejected call (a JSON-RPC error or an isError result) never echoes what was sent, nor pydantic's report."""
    before = set(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    body = {"jsonrpc": "2.0", "id": 7, **message}
    body["params"]["_meta"] = {"sessionId": f"echo-{uuid.uuid4().hex[:8]}"}
    response = post_message(shop, body)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    reply = response.json()
    assert MARK not in response.text, response.text[:500]
    text = reply["error"]["message"] if "error" in reply else text_of(reply["result"])
    assert "error" in reply or reply["result"]["isError"] is True, reply
    assert "\n" not in text and len(text) < 200, text
    for internal in ("pydantic", "validation error", "input_value", "input_type", "field required"):
        assert internal not in text.lower(), text
    assert set(redis_client.scan_iter(match=f"{prefix}:*", count=1000)) == before
    assert_unharmed(shop, redis_client, prefix, bystander)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_unknown_prompt_is_named_by_rule_in_both_eras(shop: ServeProcess, mode: str) -> None:
    """The SDK answered an unknown prompt with its name (and, stateless, an internal error and a traceback)."""
    async with Client(shop.mcp_url, mode=mode) as client:
        for name in (MARK, f"<script>{MARK}</script>"):
            with pytest.raises(MCPError) as raised:
                await client.get_prompt(name)
            assert raised.value.error.code == -32602, raised.value.error
            assert MARK not in raised.value.error.message and raised.value.error.data is None
            assert raised.value.error.message.endswith("."), raised.value.error.message
    log = shop.log_text()
    assert "Unknown prompt" not in log and "Traceback" not in log, log[-2000:]


def assert_one_sentence_error(response: httpx.Response) -> str:
    """A 400 JSON-RPC error whose message is one short sentence: no input, no pydantic, no parser positions."""
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert MARK not in response.text, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"code", "message"}, error
    message = error["message"]
    assert len(message) < 200 and "\n" not in message and message.endswith("."), message
    assert message.count(". ") == 0 and message.count(": ") <= 1, message
    for internal in ("pydantic", "validation error", "input_value", "input_type", "line 1", "column", "union["):
        assert internal not in message.lower(), message
    return message


# ---------------------------------------------------------------- bodies over WEFT_MAX_BODY_BYTES


def _padded_add(session_id: str, size: int) -> bytes:
    """A valid add_to_cart whose ``_meta`` carries padding so the body is exactly ``size`` bytes."""
    message = tool_call_message("add_to_cart", {"product_id": OATS}, meta={"sessionId": session_id, "pad": ""})
    bare = len(json.dumps(message).encode())
    message["params"]["_meta"]["pad"] = "p" * (size - bare)
    body = json.dumps(message).encode()
    assert len(body) == size
    return body


def test_body_over_the_default_limit_is_413_before_parsing(
    shop: ServeProcess, redis_client: redis.Redis, prefix: str, bystander: dict[str, Any]
) -> None:
    chat = f"big-{uuid.uuid4().hex[:8]}"
    over = post_raw(shop, _padded_add(chat, ONE_MIB + 1))
    assert over.status_code == 413, over.text[:200]
    garbage = post_raw(shop, b"{" * (ONE_MIB + 10))  # unparseable: 413, not 400, so it was never parsed
    assert garbage.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body arrives
        for _ in range(20):
            yield b" " * 65_536
        yield json.dumps(tool_call_message("view_cart", meta={"sessionId": chat})).encode()

    chunked = httpx.post(shop.mcp_url, content=chunks(), headers=JSON_HEADERS, timeout=15)
    assert chunked.status_code == 413
    assert set(redis_client.scan_iter(match=f"{prefix}:cart:{{{chat}}}")) == set()
    at_limit = post_raw(shop, _padded_add(chat, ONE_MIB))
    assert at_limit.status_code == 200 and not at_limit.json()["result"].get("isError"), at_limit.text[:300]
    assert_unharmed(shop, redis_client, prefix, bystander)


def test_max_body_bytes_setting_and_no_debug_tool(redis_url: str) -> None:
    env = {
        "WEFT_REDIS_URL": redis_url,
        "WEFT_KEY_PREFIX": f"weft-hostile-{uuid.uuid4().hex[:12]}",
        "WEFT_MAX_BODY_BYTES": "4096",
        "WEFT_DEBUG_TOOL": "false",
    }
    with ServeProcess(env=env) as small:
        assert post_raw(small, _padded_add("limit", 4096)).status_code == 200
        assert post_raw(small, _padded_add("limit", 4097)).status_code == 413
        tools = post_message(small, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).json()["result"]["tools"]
        assert "debug_session" not in {tool["name"] for tool in tools} and "view_cart" in {t["name"] for t in tools}
        result = tool_result(small, "debug_session", {}, {"sessionId": "limit"})
        assert result["isError"] is True and "no tool by that name" in text_of(result)
        assert small.is_alive()


# ---------------------------------------------------------------- pages and search text


@pytest.mark.parametrize(
    "page",
    [10**30, 10**6 + 1, 2**63, -(2**63), 0, -1, 1e308, "99999999999999999999", "1e5", 2.5, True, None, [1], {"n": 1}],
)
def test_huge_and_odd_page_numbers(shop: ServeProcess, page: Any) -> None:
    result = tool_result(shop, "search_products", {"search": "", "page": page})
    assert result["isError"] is True, result
    text = text_of(result)
    assert "page" in text and "Traceback" not in text and len(text) < 300, text


def test_page_past_the_end_says_the_last_page(shop: ServeProcess) -> None:
    result = tool_result(shop, "search_products", {"search": "", "page": 999_999})
    assert result["isError"] is True and "last page" in text_of(result), text_of(result)


@pytest.mark.parametrize(
    "search",
    [
        "\u200f\u200eשיבולת\u200f",  # RTL/LTR marks around a Hebrew word
        "\u202eoats",  # right-to-left override
        "שִׁבֹּלֶת שׁוּעָל",  # niqqud
        "🥣🌾",
        "oats🥣",
        "👨‍👩‍👧‍👦",  # ZWJ sequence
        "oats\u0000",
        "\u0000",
        "ｏａｔｓ",  # fullwidth: NFKC makes it "oats"
        "o\u0301ats",  # combining accent
        "\ufeffoats",  # BOM
        "🥣" * 200,  # 200 code points, 800 UTF-8 bytes: at the limit
        "*",
        "%",
        "\\",
    ],
    ids=[
        "rtl-marks",
        "rtl-override",
        "niqqud",
        "emoji",
        "word-emoji",
        "zwj",
        "nul-tail",
        "nul",
        "fullwidth",
        "combining",
        "bom",
        "200-emoji",
        "star",
        "percent",
        "backslash",
    ],
)
def test_unicode_edge_cases_in_search(shop: ServeProcess, search: str) -> None:
    result = tool_result(shop, "search_products", {"search": search})
    assert not result.get("isError"), text_of(result)
    data = result["structuredContent"]
    assert data["pagination"]["totalProducts"] >= 0 and isinstance(data["products"], list)
    assert shop.is_alive()


def test_lone_surrogate_is_a_parse_error(shop: ServeProcess) -> None:
    """``"\\ud800"`` is JSON-legal but no Unicode text: the SDK answers a JSON-RPC parse error, the worker lives."""
    response = post_message(shop, tool_call_message("search_products", {"search": "\ud800"}))
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700, response.text
    assert shop.is_alive() and httpx.get(f"{shop.url}/healthz", timeout=5).status_code == 200


def test_normalised_search_still_finds(shop: ServeProcess) -> None:
    plain = tool_result(shop, "search_products", {"search": "oats"})["structuredContent"]["pagination"]
    assert plain["totalProducts"] > 0
    for variant in ("ｏａｔｓ", "\u200foats\u200e", "OATS"):
        found = tool_result(shop, "search_products", {"search": variant})["structuredContent"]["pagination"]
        assert found["totalProducts"] == plain["totalProducts"], variant


def test_search_over_200_characters_is_refused(shop: ServeProcess) -> None:
    result = tool_result(shop, "search_products", {"search": "🥣" * 201})
    assert result["isError"] is True and "200" in text_of(result)
