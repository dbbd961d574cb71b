"""A real ``weft-mcp serve`` on private Redis servers in bad conditions: out of memory, a wrong password,
ACL users without rights. Each tool says the real reason and whether anything was saved; ``/readyz``
checks what the tools need; ``/metrics`` reports the condition. And a burst of ``debug_session``
calls costs one SCAN sweep."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from harness.processes import RedisProcess, ServeProcess
from tests.jsonrpc import JSON_HEADERS, call_tool, tool_call_message
from tests.redis_server import require_redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

OATS, TAHINI = "demo-market:i1702", "demo-market:i1101"


@pytest.fixture(autouse=True)
def _needs_redis_server() -> None:
    require_redis_server()


def new_prefix() -> str:
    return f"weft-cond-{uuid.uuid4().hex[:12]}"


def text_of(result: dict) -> str:
    return result["content"][0]["text"]


def readiness(server: ServeProcess) -> tuple[int, dict]:
    response = httpx.get(f"{server.url}/readyz", timeout=5)
    return response.status_code, response.json()


def condition_gauge(server: ServeProcess) -> dict[str, float]:
    body = httpx.get(f"{server.url}/metrics", timeout=5).text
    pattern = r'^weft_cart_storage_condition\{condition="(\w+)"\} (\S+)$'
    return {match[1]: float(match[2]) for match in re.finditer(pattern, body, re.M)}


def make_full(client: redis.Redis, prefix: str) -> None:
    """Fill with string keys of another prefix, then put maxmemory below what is used: out of memory
    (noeviction) for as long as the test needs, whatever client buffers come and go."""
    for index in range(20):
        client.set(f"{prefix}:{index}", "x" * 50_000)
    client.config_set("maxmemory", str(int(client.info("memory")["used_memory"]) // 2))
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set(f"{prefix}:more", "x")


@pytest.fixture
def full_redis() -> Iterator[RedisProcess]:
    with RedisProcess(extra_args=("--maxmemory-policy", "noeviction")) as server:
        yield server


def test_out_of_memory_refuses_writes_plainly_and_keeps_reads(full_redis: RedisProcess) -> None:
    prefix = new_prefix()
    admin = redis.Redis.from_url(full_redis.url, decode_responses=True)
    key = f"{prefix}:cart:{{full-chat}}"
    with ServeProcess(env={"WEFT_REDIS_URL": full_redis.url, "WEFT_KEY_PREFIX": prefix}) as shop:
        for product in (OATS, TAHINI):
            added = call_tool(shop.mcp_url, "add_to_cart", {"product_id": product}, session="full-chat")
            assert not added.get("isError"), added
        assert readiness(shop) == (200, {"status": "ready", "storage": "redis"})
        assert condition_gauge(shop)["ok"] == 1.0

        make_full(admin, f"{prefix}-filler")
        before = admin.hgetall(key)
        for name, arguments in (
            ("add_to_cart", {"product_id": OATS}),  # an existing line
            ("add_to_cart", {"product_id": "demo-market:i1102"}),  # a new line
            ("update_cart_item", {"product_id": OATS, "quantity": 5}),
        ):
            result = call_tool(shop.mcp_url, name, arguments, session="full-chat")
            assert result.get("isError") is True, result
            assert "full" in text_of(result) and "nothing was saved" in text_of(result), text_of(result)
            assert "may still" not in text_of(result)
        result = call_tool(shop.mcp_url, "add_to_cart", {"product_id": OATS}, session="new-chat-while-full")
        assert "full" in text_of(result) and not admin.exists(f"{prefix}:cart:{{new-chat-while-full}}")
        assert admin.hgetall(key) == before  # nothing half-applied, not even the stamp

        view = call_tool(shop.mcp_url, "view_cart", session="full-chat")
        assert not view.get("isError"), text_of(view)
        assert {item["id"]: item["quantity"] for item in view["structuredContent"]["items"]} == {OATS: 1, TAHINI: 1}
        debug = call_tool(shop.mcp_url, "debug_session", session="full-chat")
        assert not debug.get("isError") and debug["structuredContent"]["items_in_cart"] == 2, text_of(debug)

        status, body = readiness(shop)
        assert (status, body["status"], body["condition"]) == (200, "degraded", "full"), body
        assert "memory" in body["reason"]
        gauge = condition_gauge(shop)
        assert gauge["full"] == 1.0 and gauge["ok"] == 0.0, gauge

        removed = call_tool(shop.mcp_url, "remove_from_cart", {"product_id": TAHINI}, session="full-chat")
        assert not removed.get("isError"), text_of(removed)  # removing frees memory, so it is allowed

        admin.config_set("maxmemory", "0")
        assert readiness(shop) == (200, {"status": "ready", "storage": "redis"})
        assert condition_gauge(shop)["full"] == 0.0
        again = call_tool(shop.mcp_url, "add_to_cart", {"product_id": OATS}, session="full-chat")
        assert not again.get("isError") and again["structuredContent"]["items"][0]["quantity"] == 2
        assert not admin.exists(f"{prefix}:cart:{{h-readyz}}")  # the probe leaves nothing behind
    admin.close()


def test_wrong_password_is_named_and_not_ready() -> None:
    server = RedisProcess().start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", "right-Pa55")
        for url in (f"redis://:wrong-Pa55@127.0.0.1:{server.port}/0", server.url):  # wrong, then none
            with ServeProcess(env={"WEFT_REDIS_URL": url, "WEFT_KEY_PREFIX": new_prefix()}) as shop:
                status, body = readiness(shop)
                assert (status, body["condition"]) == (503, "authentication"), body
                assert "authentication" in body["reason"] and "ping" not in body["reason"]
                for name, arguments in (("add_to_cart", {"product_id": OATS}), ("view_cart", {})):
                    result = call_tool(shop.mcp_url, name, arguments, session="pw-chat")
                    assert result.get("isError") is True and "credentials" in text_of(result), result
                    assert "may still" not in text_of(result)
                assert condition_gauge(shop)["authentication"] == 1.0
                assert "wrong-Pa55" not in shop.log_text()
    finally:
        server.stop()


def stray_keys(admin: redis.Redis, prefix: str) -> list[str]:
    """Keys under the prefix but the generated server secret (written once at start, with WEFT_SECRET_KEY unset)."""
    return [key for key in admin.keys(f"{prefix}:*") if key not in (f"{prefix}:secret", f"{prefix}:xfer-sweep")]


def test_acl_users_without_rights_are_named_and_not_ready() -> None:
    server = RedisProcess().start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    prefix = new_prefix()
    try:
        admin.execute_command("ACL", "SETUSER", "nokeys", "on", ">nk-Pa55", "+@all")  # no key patterns
        admin.execute_command(
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">rd-Pa55",
            f"~{prefix}:*",
            "+@read",
            "+@connection",
            "+evalsha",
            "+eval",
            "+script|load",
        )
        admin.hset(
            f"{prefix}:cart:{{acl-chat}}",
            mapping={OATS: '{"q":3,"n":"Oats","p":"18.90"}', "_last_accessed": "1700000000"},
        )
        for user, password in (("nokeys", "nk-Pa55"), ("reader", "rd-Pa55")):
            url = f"redis://{user}:{password}@127.0.0.1:{server.port}/0"
            # With WEFT_SECRET_KEY set no worker needs to write <prefix>:secret: a read-only user can read carts.
            env = {"WEFT_REDIS_URL": url, "WEFT_KEY_PREFIX": prefix, "WEFT_SECRET_KEY": "s" * 32}
            with ServeProcess(env=env) as shop:
                status, body = readiness(shop)
                assert (status, body["condition"]) == (503, "permission"), (user, body)
                assert admin.keys(f"{prefix}:*") == [f"{prefix}:cart:{{acl-chat}}"]  # the probe left nothing
                result = call_tool(shop.mcp_url, "add_to_cart", {"product_id": OATS}, session="acl-chat")
                assert result.get("isError") is True and "permit" in text_of(result), (user, result)
                assert "may still" not in text_of(result)
                view = call_tool(shop.mcp_url, "view_cart", session="acl-chat")
                if user == "reader":  # reading needs no write: the stamp is skipped
                    assert not view.get("isError") and view["structuredContent"]["item_count"] == 3, view
                else:
                    assert view.get("isError") is True and "permit" in text_of(view), view
        assert admin.hget(f"{prefix}:cart:{{acl-chat}}", OATS) == '{"q":3,"n":"Oats","p":"18.90"}'
    finally:
        admin.close()
        server.stop()


async def _debug_burst(url: str, count: int) -> list[dict]:
    async with httpx.AsyncClient(timeout=20) as client:

        async def one(index: int) -> dict:
            message = tool_call_message("debug_session", meta={"sessionId": f"burst-{index}"}, request_id=index)
            response = await client.post(url, json=message, headers=JSON_HEADERS)
            return response.json()["result"]

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def test_a_burst_of_debug_calls_costs_one_scan() -> None:
    server = RedisProcess().start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    prefix = new_prefix()
    try:
        with ServeProcess(env={"WEFT_REDIS_URL": server.url, "WEFT_KEY_PREFIX": prefix}) as shop:
            for index in range(3):
                call_tool(shop.mcp_url, "add_to_cart", {"product_id": OATS}, session=f"cart-{index}")
            admin.config_resetstat()
            results = asyncio.run(_debug_burst(shop.mcp_url, 16))
            scans = admin.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)
            assert scans == 1, admin.info("commandstats")
            data = [result["structuredContent"] for result in results]
            assert {d["active_sessions"] for d in data} == {3}
            assert len({d["counted_at"] for d in data}) == 1 and all(d["counted_seconds_ago"] < 5 for d in data)
            assert all("burst-" not in str(d["active_sessions"]) for d in data)
    finally:
        admin.close()
        server.stop()


# What each ACL user lacks, what /readyz must answer (status, condition, missing), and which tools must work.
ACL_CASES = {
    "noscan": (("+@all", "-scan"), 200, "degraded", ["SCAN"]),
    "nodel": (("+@all", "-del"), 200, "degraded", ["DEL"]),
    "nohdel": (("+@all", "-hdel"), 503, "unavailable", ["HDEL"]),
    "noevalsha": (("+@all", "-evalsha"), 503, "unavailable", None),
    "readonly": (("+@read", "+@connection", "+evalsha", "+eval", "+script|load"), 503, "unavailable", None),
}


def _tool_works(shop: ServeProcess, tool: str, arguments: dict, session: str) -> bool:
    result = call_tool(shop.mcp_url, tool, arguments, session=session)
    if result.get("isError"):
        assert "permit" in text_of(result), (tool, result)  # the reason is named, never "retry"
    return not result.get("isError")


@pytest.mark.parametrize("user", sorted(ACL_CASES))
def test_readiness_names_what_an_acl_user_lacks_and_leaves_no_key(user: str) -> None:
    """/readyz checks the commands the enabled tools need, says which one is missing, writes nothing that
    stays, and agrees with what the tools then do."""
    rules, status_wanted, state, missing = ACL_CASES[user]
    server = RedisProcess().start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    prefix = new_prefix()
    try:
        admin.execute_command("ACL", "SETUSER", user, "on", ">u-Pa55", f"~{prefix}:*", "+@connection", *rules)
        url = f"redis://{user}:u-Pa55@127.0.0.1:{server.port}/0"
        with ServeProcess(env={"WEFT_REDIS_URL": url, "WEFT_KEY_PREFIX": prefix}) as shop:
            for _ in range(2):
                status, body = readiness(shop)
                assert (status, body["status"], body["condition"]) == (status_wanted, state, "permission"), body
                if missing:
                    assert body["missing"] == missing and all(m in body["reason"] for m in missing), body
                assert stray_keys(admin, prefix) == [], stray_keys(admin, prefix)  # the probe left nothing
            admin.hset(f"{prefix}:cart:{{acl-chat}}", OATS, '{"q":1,"n":"Oats","p":"18.90"}')  # remove has a line
            works = {
                "add_to_cart": _tool_works(shop, "add_to_cart", {"product_id": OATS}, "acl-chat"),
                "view_cart": _tool_works(shop, "view_cart", {}, "acl-chat"),
                "debug_session": _tool_works(shop, "debug_session", {}, "acl-chat"),
                "remove_from_cart": _tool_works(shop, "remove_from_cart", {"product_id": OATS}, "acl-chat"),
                "clear_cart": _tool_works(shop, "clear_cart", {}, "acl-chat"),
            }
            if status_wanted == 200:  # degraded: exactly the tool the missing command serves fails
                failing = {"SCAN": "debug_session", "DEL": "clear_cart"}[missing[0]]
                assert [tool for tool, ok in works.items() if not ok] == [failing], works
                assert failing in body["reason"], body
            else:  # unavailable: a tool the scripts serve fails
                assert not works["add_to_cart"] or not works["remove_from_cart"], works
    finally:
        admin.close()
        server.stop()


def test_a_user_without_scan_is_ready_when_the_debug_tool_is_off() -> None:
    server = RedisProcess().start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    prefix = new_prefix()
    try:
        admin.execute_command("ACL", "SETUSER", "noscan", "on", ">u-Pa55", f"~{prefix}:*", "+@all", "-scan")
        url = f"redis://noscan:u-Pa55@127.0.0.1:{server.port}/0"
        env = {"WEFT_REDIS_URL": url, "WEFT_KEY_PREFIX": prefix, "WEFT_DEBUG_TOOL": "false"}
        with ServeProcess(env=env) as shop:
            status, body = readiness(shop)
            assert (status, body["status"]) == (200, "ready"), body
            assert stray_keys(admin, prefix) == []
    finally:
        admin.close()
        server.stop()


@pytest.mark.parametrize(("rule", "ttl", "command"), [("-expire", "60", "EXPIRE"), ("-persist", "0", "PERSIST")])
def test_a_user_without_the_ttl_command_is_degraded_and_the_tools_work(rule: str, ttl: str, command: str) -> None:
    """The scripts set the TTL with pcall after the cart's change, so without EXPIRE (or PERSIST) every cart tool
    still works and only expiry is lost: /readyz says exactly that, degraded, and does not take the worker out."""
    server = RedisProcess().start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    prefix = new_prefix()
    try:
        admin.execute_command("ACL", "SETUSER", "nottl", "on", ">u-Pa55", f"~{prefix}:*", "+@all", rule)
        url = f"redis://nottl:u-Pa55@127.0.0.1:{server.port}/0"
        env = {"WEFT_REDIS_URL": url, "WEFT_KEY_PREFIX": prefix, "WEFT_CART_TTL_SECONDS": ttl}
        with ServeProcess(env=env) as shop:
            status, body = readiness(shop)
            assert (status, body["status"], body["condition"]) == (200, "degraded", "permission"), body
            assert body["missing"] == [command] and "expiry" in body["reason"], body
            assert stray_keys(admin, prefix) == []
            for tool, arguments in (
                ("add_to_cart", {"product_id": OATS}),
                ("view_cart", {}),
                ("remove_from_cart", {"product_id": OATS}),
                ("clear_cart", {}),
            ):
                assert _tool_works(shop, tool, arguments, "ttl-chat"), tool
    finally:
        admin.close()
        server.stop()
