"""Signed-in and anonymous shoppers against ``weft-mcp serve`` over real HTTP: WEFT_AUTH_MODE=optional with the
tokens file and with JWTs (no token = anonymous, a bad token = 401, the protected-resource metadata served), the
account cart across conversations and devices for a JWT shopper on the SDK client (both protocol eras) and on
raw JSON-RPC, and the per-conversation mode."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import redis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness.processes import ServeProcess, free_port
from service.answers import SIGN_IN_HINT
from service.cart_ids import INVALID_CART_ID
from tests.jsonrpc import JSON_HEADERS, tool_call_message
from tests.test_auth import ISSUER, OATS, Issuer, assert_refused, post
from tests.test_auth import issuer as issuer  # noqa: F401 (the module-scoped JWKS server fixture)

pytestmark = pytest.mark.e2e
TAHINI = "demo-market:i1701"


def result_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    return dict(response.json()["result"])


def call(url: str, name: str, arguments: dict[str, Any], chat: str | None, token: str | None = None) -> dict[str, Any]:
    meta = {"sessionId": chat} if chat else None
    return result_of(post(url, tool_call_message(name, arguments, meta=meta), token))


def test_optional_mode_with_the_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"tok-alice alice\nsha256:{hashlib.sha256(b'tok-bob').hexdigest()} bob\n")
    env = {"WEFT_AUTH_TOKENS_FILE": str(tokens), "WEFT_AUTH_MODE": "optional"}
    with ServeProcess(env=env) as shop:
        guest = call(shop.mcp_url, "add_to_cart", {"product_id": OATS}, "guest-chat")
        assert not guest.get("isError") and guest["content"][0]["text"].count(SIGN_IN_HINT) == 1
        assert guest["structuredContent"]["cart_id"].startswith("wc_r")
        message = tool_call_message("view_cart", meta={"sessionId": "guest-chat"})
        for bad in ("tok-mallory", "tok-alice2", "x"):
            assert_refused(post(shop.mcp_url, message, bad))
        assert_refused(httpx.post(shop.mcp_url, json=message, headers={"Authorization": "Basic eA=="}))

        alice = call(shop.mcp_url, "add_to_cart", {"product_id": TAHINI, "quantity": 2}, "phone", "tok-alice")
        assert SIGN_IN_HINT not in alice["content"][0]["text"]
        account_id = alice["structuredContent"]["cart_id"]
        assert account_id.startswith("wc_A") and alice["structuredContent"]["session"]["source"] == "account"
        laptop = call(shop.mcp_url, "view_cart", {}, "laptop", "tok-alice")["structuredContent"]
        assert {i["id"]: i["quantity"] for i in laptop["items"]}[TAHINI] == 2 and laptop["cart_id"] == account_id
        for token in (None, "tok-bob"):  # another shopper, an anonymous caller: the same one refusal
            refused = call(shop.mcp_url, "view_cart", {"cart_id": account_id}, None, token)
            assert refused["isError"] and refused["content"][0]["text"] == INVALID_CART_ID
        assert call(shop.mcp_url, "view_cart", {}, "phone", "tok-bob")["structuredContent"]["items"] == []
        assert "tok-alice" not in shop.log_text() and "alice" not in shop.log_text()


async def test_optional_mode_with_jwts_on_the_sdk_client_and_raw_json_rpc(issuer: Issuer) -> None:  # noqa: F811
    port = free_port()
    audience = f"http://127.0.0.1:{port}/mcp"
    env = {
        "WEFT_AUTH_JWKS_URL": issuer.jwks_url,
        "WEFT_AUTH_ISSUER": ISSUER,
        "WEFT_AUTH_AUDIENCE": audience,
        "WEFT_AUTH_MODE": "optional",
    }
    with ServeProcess(env=env, port=port) as shop:
        metadata_url = f"{shop.url}/.well-known/oauth-protected-resource/mcp"
        metadata = httpx.get(metadata_url, timeout=5)
        assert metadata.status_code == 200 and metadata.json()["authorization_servers"] == [ISSUER]

        anonymous = call(shop.mcp_url, "view_cart", {}, "guest")
        assert not anonymous.get("isError") and SIGN_IN_HINT in anonymous["content"][0]["text"]
        refused = post(
            shop.mcp_url, tool_call_message("view_cart", meta={"sessionId": "guest"}), issuer.forged(audience)
        )
        assert_refused(refused)
        assert f'resource_metadata="{metadata_url}"' in refused.headers["www-authenticate"]
        expired = issuer.token(audience, iat=1, exp=2)
        assert_refused(post(shop.mcp_url, tool_call_message("view_cart"), expired))

        alice = issuer.token(audience, "alice@example.com")
        call(shop.mcp_url, "add_to_cart", {"product_id": OATS, "quantity": 2}, "raw-chat")  # as a guest
        raw = call(shop.mcp_url, "add_to_cart", {"product_id": OATS, "quantity": 1}, "raw-chat", alice)
        assert raw["structuredContent"]["claimed"] == {"lines": 1, "capped": [], "skipped": []}  # signed in: merged
        account_id = raw["structuredContent"]["cart_id"]
        assert account_id.startswith("wc_A")
        assert call(shop.mcp_url, "view_cart", {}, "raw-chat")["structuredContent"]["items"] == []  # guest: gone

        # The SDK's own client on two "devices" (no conversation id, then another one), both protocol eras.
        for mode, chat in (("legacy", None), ("2026-07-28", "tablet")):
            http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {alice}"}, timeout=10)
            async with (
                http_client,
                Client(streamable_http_client(shop.mcp_url, http_client=http_client), mode=mode) as client,
            ):
                meta = {"sessionId": chat} if chat else None
                viewed = await client.call_tool("view_cart", {}, meta=meta)
                assert not viewed.is_error, viewed.content[0].text
                assert viewed.structured_content["cart_id"] == account_id, mode
                assert {i["id"]: i["quantity"] for i in viewed.structured_content["items"]}[OATS] == 3, mode
                added = await client.call_tool("add_to_cart", {"product_id": TAHINI, "cart_id": account_id}, meta=meta)
                assert not added.is_error and added.structured_content["cart_id"] == account_id
                link = await client.call_tool("checkout_link", {}, meta=meta)
                assert link.structured_content["links"][0]["url"].startswith("https://demo-market.example.com/cart/")
                assert account_id not in str(link.structured_content["links"]) and alice not in str(link.content)
        final = call(shop.mcp_url, "view_cart", {"cart_id": account_id}, None, alice)["structuredContent"]
        assert {i["id"]: i["quantity"] for i in final["items"]} == {OATS: 3, TAHINI: 2}
        bob = issuer.token(audience, "bob@example.com")
        assert call(shop.mcp_url, "view_cart", {"cart_id": account_id}, None, bob)["isError"]
        assert call(shop.mcp_url, "view_cart", {"cart_id": account_id}, None)["isError"]


def test_conversation_mode_over_http(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-alice alice\n")
    env = {"WEFT_AUTH_TOKENS_FILE": str(tokens), "WEFT_SIGNED_IN_CARTS": "conversation"}  # required: the default
    with ServeProcess(env=env) as shop:
        assert_refused(post(shop.mcp_url, tool_call_message("view_cart", meta={"sessionId": "x"})))
        phone = call(shop.mcp_url, "add_to_cart", {"product_id": OATS}, "phone", "tok-alice")["structuredContent"]
        laptop = call(shop.mcp_url, "view_cart", {}, "laptop", "tok-alice")["structuredContent"]
        assert phone["cart_id"].startswith("wc_R") and laptop["items"] == []
        again = call(shop.mcp_url, "view_cart", {"cart_id": phone["cart_id"]}, "laptop", "tok-alice")
        assert [i["quantity"] for i in again["structuredContent"]["items"]] == [1]


async def _sign_in_burst(urls: list[str], token: str, chat: str, calls: int) -> list[dict[str, Any]]:
    """``calls`` view_cart calls at once naming the guest conversation, over the worker processes in turn."""
    headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=20) as client:

        async def one(index: int) -> dict[str, Any]:
            message = tool_call_message("view_cart", meta={"sessionId": chat}, request_id=index)
            response = await client.post(urls[index % len(urls)], json=message, headers=headers)
            return result_of(response)

        return list(await asyncio.gather(*(one(i) for i in range(calls))))


@pytest.mark.redis
async def test_tabs_signing_in_at_once_merge_exactly_once_across_processes(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Two ``serve`` processes of two workers each on one Redis; per round a guest cart of 2 lines, then 32 signed-in
    calls at once naming it: the lines arrive once (quantities add up, the reports sum to 2, the guest key is gone)."""
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-alice alice\n")
    prefix = f"weft-signin-{uuid.uuid4().hex[:10]}"
    env = {
        "WEFT_REDIS_URL": redis_url,
        "WEFT_KEY_PREFIX": prefix,
        "WEFT_AUTH_TOKENS_FILE": str(tokens),
        "WEFT_AUTH_MODE": "optional",
        "WEFT_SECRET_KEY": "s" * 40,
    }
    rounds, calls = 8, 32
    with (
        ServeProcess(env=env, extra_args=["--workers", "2"]) as one,
        ServeProcess(env=env, extra_args=["--workers", "2"]) as two,
    ):
        urls = [one.mcp_url, two.mcp_url]
        started = time.monotonic()
        for round_ in range(rounds):
            chat = f"guest-{round_}"
            call(one.mcp_url, "add_to_cart", {"product_id": OATS, "quantity": 2}, chat)
            call(two.mcp_url, "add_to_cart", {"product_id": TAHINI, "quantity": 1}, chat)
            answers = await _sign_in_burst(urls, "tok-alice", chat, calls)
            assert not any(answer.get("isError") for answer in answers), answers
            reported = sum(a["structuredContent"].get("claimed", {}).get("lines", 0) for a in answers)
            assert reported == 2, (round_, reported)
            final = call(one.mcp_url, "view_cart", {}, chat, "tok-alice")["structuredContent"]
            assert {i["id"]: i["quantity"] for i in final["items"]} == {OATS: 2 * (round_ + 1), TAHINI: round_ + 1}
            assert not redis_client.exists(f"{prefix}:cart:{{{chat}}}")
            assert not list(redis_client.scan_iter(match=f"{prefix}:xfer:*"))  # no claim left half-done
        elapsed = time.monotonic() - started
        print(f"sign-in race: {rounds} rounds x {calls} concurrent calls over 2 processes x 2 workers, {elapsed:.2f} s")
    for key in redis_client.scan_iter(match=f"{prefix}:*"):
        redis_client.delete(key)
