"""A primary, a replica and 3 Sentinels; the test kills the primary and the service keeps serving.

Carts written before the kill (and acknowledged by the replica with ``WAIT``) are all there after
the failover, and the failover costs the caller at most a couple of failed calls: redis-py asks
the Sentinels for the new primary, and connecting (never a command) waits up to 1.5 s for it.
"""

from __future__ import annotations

import shutil
import time

import pytest
import redis

from harness.processes import ServeProcess
from tests.jsonrpc import call_tool
from tests.redis_server import SentinelSet

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server"),
]

CONVERSATIONS = 10
FAILOVER_BOUND_SECONDS = 30


def test_service_survives_a_primary_kill_with_its_carts() -> None:
    sentinels = SentinelSet(count=3).start()
    try:
        env = {"WEFT_REDIS_SENTINELS": sentinels.sentinel_addresses, "WEFT_KEY_PREFIX": "se"}
        with ServeProcess(env=env) as server:
            for index in range(CONVERSATIONS):
                result = call_tool(
                    server.mcp_url,
                    "add_to_cart",
                    {"product_id": "demo-market:i1101", "quantity": 3},
                    session=f"sentinel-chat-{index}",
                )
                assert not result.get("isError"), result
            with redis.Redis(port=sentinels.primary.port) as primary:
                assert primary.execute_command("WAIT", 1, 1000) == 1  # the replica has every cart

            old_port = sentinels.primary.port
            sentinels.primary.kill()
            killed_at = time.monotonic()
            failed = 0
            while True:
                result = call_tool(
                    server.mcp_url, "add_to_cart", {"product_id": "demo-market:i1102"}, session="after-failover"
                )
                if not result.get("isError"):
                    break
                failed += 1
                assert time.monotonic() - killed_at < FAILOVER_BOUND_SECONDS, "no new primary in time"
                time.sleep(0.2)
            recovered = time.monotonic() - killed_at
            new_port = sentinels.sentinels[0].primary_port_seen()
            print(
                f"failover: first success {recovered:.2f} s after the kill, {failed} failed call(s), "
                f"primary {old_port} -> {new_port}"
            )
            assert new_port == sentinels.replica.port
            assert failed <= 3

            # Every cart written before the kill is there, and nothing fails any more.
            for index in range(CONVERSATIONS):
                cart = call_tool(server.mcp_url, "view_cart", session=f"sentinel-chat-{index}")
                assert not cart.get("isError"), cart
                assert [(i["id"], i["quantity"]) for i in cart["structuredContent"]["items"]] == [
                    ("demo-market:i1101", 3)
                ]
            debug = call_tool(server.mcp_url, "debug_session", session="after-failover")["structuredContent"]
            assert debug["storage"] == "redis-sentinel"
            assert debug["active_sessions"] == CONVERSATIONS + 1
    finally:
        sentinels.stop()
