"""Two ``weft-mcp serve`` hosts (one with ``--workers 2``) behind a real nginx running deploy/nginx.conf.

Many conversations add to their carts in parallel through nginx; every final quantity is exact
and both upstreams served traffic (nginx's access log records ``$upstream_addr``). The shipped
limits are exercised too: GET /mcp is refused at once and an oversized body gets 413 at nginx.
"""

from __future__ import annotations

import asyncio
import collections
import re

import httpx
import pytest

from harness.processes import ServeProcess
from tests.jsonrpc import JSON_HEADERS, call_tool, tool_call_message
from tests.nginx_process import NginxProcess, nginx_binary

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs nginx-light)"),
]

CONVERSATIONS = 24
ADDS_PER_CONVERSATION = 6
PRODUCTS = ("demo-market:i1101", "demo-market:i1102")


async def add_everywhere(mcp_url: str) -> list[bool]:
    """Every conversation adds each product ADDS_PER_CONVERSATION / 2 times, all calls in flight together."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=20.0, limits=limits) as client:

        async def add(conversation: int, index: int) -> bool:
            message = tool_call_message(
                "add_to_cart",
                {"product_id": PRODUCTS[index % 2], "quantity": 1},
                meta={"sessionId": f"lb-chat-{conversation}"},
                request_id=index,
            )
            response = await client.post(mcp_url, json=message, headers=JSON_HEADERS)
            return response.status_code == 200 and not response.json()["result"].get("isError", False)

        calls = [add(c, i) for c in range(CONVERSATIONS) for i in range(ADDS_PER_CONVERSATION)]
        return list(await asyncio.gather(*calls))


def test_parallel_conversations_through_nginx_are_exact_and_spread(redis_url: str, key_prefix: str) -> None:
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": key_prefix, "WEFT_TRUSTED_PROXIES": "127.0.0.1"}
    with ServeProcess(env=env) as one, ServeProcess(env=env, extra_args=["--workers", "2"]) as two:
        upstreams = [f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"]
        with NginxProcess(upstreams=upstreams) as nginx:
            mcp_url = f"{nginx.url}/mcp"
            results = asyncio.run(add_everywhere(mcp_url))
            assert all(results), f"{results.count(False)} of {len(results)} adds failed"

            for conversation in range(CONVERSATIONS):
                cart = call_tool(mcp_url, "view_cart", session=f"lb-chat-{conversation}")["structuredContent"]
                quantities = {item["id"]: item["quantity"] for item in cart["items"]}
                assert quantities == {product: ADDS_PER_CONVERSATION // 2 for product in PRODUCTS}

            debug = call_tool(mcp_url, "debug_session", session="lb-chat-0")["structuredContent"]
            assert debug["active_sessions"] == CONVERSATIONS

            # The shipped limits: no long-held GET /mcp, a body limit, the health paths.
            assert httpx.get(mcp_url, timeout=5).status_code == 405
            too_big = httpx.post(mcp_url, content=b"x" * (2 * 1024 * 1024), headers=JSON_HEADERS, timeout=10)
            assert too_big.status_code == 413
            assert httpx.get(f"{nginx.url}/readyz", timeout=5).json()["status"] == "ready"

            served = collections.Counter(re.findall(r"upstream=(\S+)", nginx.access_log.read_text()))
        print(f"requests per upstream: {dict(served)}")
        for upstream in upstreams:
            assert served[upstream] > 0, f"{upstream} served nothing: {served}"
        # The --workers 2 host really ran two worker processes (which of them took calls is the kernel's choice).
        workers = set(re.findall(r"Started server process \[(\d+)\]", two.log_text()))
        serving = set(re.findall(r"\[(\d+)\] service\.sessions: Using session ID", two.log_text()))
        print(f"--workers 2 host: {len(workers)} worker processes, {len(serving)} of them served calls")
        assert len(workers) == 2 and serving <= workers
