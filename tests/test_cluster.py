"""A 3-primary Redis Cluster built by the test (``--cluster-enabled yes`` servers + ``redis-cli --cluster create``).

``weft-mcp serve`` with ``WEFT_REDIS_CLUSTER=true`` and a URL naming one node: carts land on
several primaries (each cart's hash tag keeps its script in one slot) and ``debug_session``
counts every primary's carts (redis-py's asyncio ``RedisCluster.scan_iter`` scans each primary).
"""

from __future__ import annotations

import shutil

import httpx
import pytest

from harness.processes import ServeProcess
from tests.jsonrpc import call_tool
from tests.redis_server import RedisCluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("redis-cli")), reason="needs redis-server"),
]

CONVERSATIONS = 30


@pytest.fixture(scope="module")
def cluster() -> RedisCluster:
    cluster = RedisCluster(size=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_carts_spread_over_primaries_and_are_counted_across_all(cluster: RedisCluster) -> None:
    env = {"WEFT_REDIS_CLUSTER": "true", "WEFT_REDIS_URL": cluster.url, "WEFT_KEY_PREFIX": "cl"}
    with ServeProcess(env=env) as server:
        for index in range(CONVERSATIONS):
            session = f"cluster-chat-{index}"
            call_tool(
                server.mcp_url, "add_to_cart", {"product_id": "demo-market:i1101", "quantity": 2}, session=session
            )
            result = call_tool(server.mcp_url, "add_to_cart", {"product_id": "demo-market:i1102"}, session=session)
            assert not result.get("isError"), result
            assert {i["id"]: i["quantity"] for i in result["structuredContent"]["items"]} == {
                "demo-market:i1101": 2,
                "demo-market:i1102": 1,
            }
        debug = call_tool(server.mcp_url, "debug_session", session="cluster-chat-0")["structuredContent"]
        assert debug["storage"] == "redis-cluster"
        assert debug["active_sessions"] == CONVERSATIONS
        assert httpx.get(f"{server.url}/readyz", timeout=5).json()["storage"] == "redis-cluster"

    per_primary = []
    for client in cluster.primaries():
        with client:
            per_primary.append(sum(1 for _ in client.scan_iter(match="cl:cart:*", count=1000)))
    print(f"carts per primary: {per_primary}")
    assert sum(per_primary) == CONVERSATIONS
    assert sum(1 for count in per_primary if count) >= 2  # no single node holds every cart
