"""A 3-primary Redis Cluster built by the test (``--cluster-enabled yes`` servers + ``redis-cli --cluster create``).

``weft-mcp serve`` with ``WEFT_REDIS_CLUSTER=true`` and a URL naming one node: carts land on
several primaries (each cart's hash tag keeps its script in one slot) and ``debug_session``
counts every primary's carts (redis-py's asyncio ``RedisCluster.scan_iter`` scans each primary).
``weft-mcp sessions`` sweeps every primary too, its pipelined scripts called by SHA on each key's node.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from harness.processes import ServeProcess
from service.carts import SCAN_COUNT, CartStore
from service.cli import main
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


def test_sessions_commands_sweep_every_primary(
    cluster: RedisCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """count, list and purge-idle on a cluster: carts on every primary, the idle half deleted, the rest kept."""
    monkeypatch.chdir("/")
    for name, value in {"WEFT_REDIS_CLUSTER": "true", "WEFT_REDIS_URL": cluster.url, "WEFT_KEY_PREFIX": "ops"}.items():
        monkeypatch.setenv(name, value)

    async def fill() -> None:
        store = CartStore.connect(cluster.url, cluster=True, key_prefix="ops")
        try:
            for index in range(40):
                await store.add(f"ops-{index}", "demo:i1", index % 3 + 1, "Oats", Decimal("9.90"))
                if index % 2:
                    await store.client.hset(store.cart_key(f"ops-{index}"), "_last_accessed", int(time.time()) - 864000)
        finally:
            await store.aclose()

    asyncio.run(fill())

    def run(*args: str) -> tuple[int, Any]:
        code = main(["sessions", *args, "--json"])
        return code, json.loads(capsys.readouterr().out)

    assert run("count") == (0, {"carts": 40, "damaged": 0, "damaged_keys": []})
    code, listed = run("list", "--limit", "100")
    assert code == 0 and sorted(row["session_key"] for row in listed) == sorted(f"ops-{i}" for i in range(40))
    assert {row["session_key"]: row["lines"] for row in listed}["ops-5"] == 1
    code, dry = run("purge-idle", "--older-than", "7d", "--dry-run")
    assert code == 0 and (dry["scanned"], dry["idle"], dry["deleted"]) == (40, 20, 0)
    for client in cluster.primaries():  # the servers forget every script: the sweep loads them again
        with client:
            client.script_flush()
    code, report = run("purge-idle", "--older-than", "7d", "--yes")
    assert code == 0 and (report["scanned"], report["idle"], report["deleted"]) == (40, 20, 20)
    assert run("count")[1]["carts"] == 20
    code, shown = run("show", "ops-1")
    assert code == 1 and shown["exists"] is False
    assert run("show", "ops-2")[1]["lines"][0]["quantity"] == 3


def test_purge_idle_on_a_cluster_survives_scripts_lost_mid_sweep(
    cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More carts than one SCAN batch; every primary flushes its scripts after the first batch is read."""
    total = SCAN_COUNT + 200
    cart = {"t:a": '{"q":1,"n":"x","p":"1.00"}', "_last_accessed": str(int(time.time()) - 864000)}

    async def scenario() -> tuple[int, int, int]:
        store = CartStore.connect(cluster.url, cluster=True, key_prefix="lost")
        try:
            pipe = store.client.pipeline(transaction=False)
            for index in range(total):
                pipe.hset(store.cart_key(f"bulk-{index}"), mapping=cart)
            await pipe.execute()
            inspect = store._inspect

            async def inspect_then_forget_scripts(keys: list[str], now: int | None = None) -> Any:
                states = await inspect(keys, now)
                await store.client.script_flush()  # every primary
                return states

            monkeypatch.setattr(store, "_inspect", inspect_then_forget_scripts)
            report = await store.purge_idle(7 * 86400)
            return report.idle, report.deleted, await store.count_carts()
        finally:
            await store.aclose()

    assert asyncio.run(scenario()) == (total, total, 0)


def test_minted_carts_cart_ids_and_idempotent_retries_on_a_cluster(cluster: RedisCluster) -> None:
    """A minted cart's record key shares its hash tag (no CROSSSLOT); the generated secret is one for all."""
    from tests.jsonrpc import JSON_HEADERS, tool_call_message

    env = {"WEFT_REDIS_CLUSTER": "true", "WEFT_REDIS_URL": cluster.url, "WEFT_KEY_PREFIX": "clid"}

    def rpc(server: ServeProcess, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None) -> Any:
        message = tool_call_message(name, arguments, meta=meta)
        result = httpx.post(server.mcp_url, json=message, headers=JSON_HEADERS, timeout=10).json()["result"]
        assert not result.get("isError"), result
        return result["structuredContent"]

    cart_ids = []
    with ServeProcess(env=env) as server:
        for index in range(12):
            meta = {"idempotency-key": f"cl-add-{index}"}
            first = rpc(server, "add_to_cart", {"product_id": "demo-market:i1101", "quantity": 2}, meta)
            again = rpc(
                server,
                "add_to_cart",
                {"product_id": "demo-market:i1101", "quantity": 2, "cart_id": first["cart_id"]},
                meta,
            )
            assert again["replayed"] is True and again["item_count"] == 2
            cart_ids.append(first["cart_id"])
    with ServeProcess(env=env) as restarted:  # the secret generated in the cluster opens the same ids
        for cart_id in cart_ids:
            assert rpc(restarted, "view_cart", {"cart_id": cart_id})["item_count"] == 2
    per_primary = []
    for client in cluster.primaries():
        with client:
            per_primary.append(sum(1 for _ in client.scan_iter(match="clid:idem:*", count=1000)))
    assert sum(per_primary) == 12 and sum(1 for count in per_primary if count) >= 2, per_primary
