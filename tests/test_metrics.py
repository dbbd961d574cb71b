"""/metrics: tool calls by tool and outcome, latency, Redis errors, fallback calls; summed over workers."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import ServeProcess, free_port
from service.app import create_app
from service.config import Settings
from tests.jsonrpc import JSON_HEADERS, tool_call_message


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def _call(client: httpx.AsyncClient, name: str, arguments: dict, meta: dict | None) -> dict:
    response = await client.post("/mcp", json=tool_call_message(name, arguments, meta=meta), headers=JSON_HEADERS)
    assert response.status_code == 200
    return response.json()["result"]


async def test_metrics_count_tools_outcomes_and_fallback() -> None:
    app = create_app(Settings(session_fallback="default"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            before = samples((await client.get("/metrics")).text)
            await _call(client, "add_to_cart", {"product_id": "demo-market:i1101"}, {"sessionId": "m-1"})
            result = await _call(client, "add_to_cart", {"product_id": "nope:i1"}, {"sessionId": "m-1"})
            assert result["isError"] is True
            await _call(client, "view_cart", {}, None)  # no id: the shared fallback cart
            await _call(client, "no_such_tool", {}, {"sessionId": "m-1"})
            response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("weft_tool_calls_total", tool="add_to_cart", outcome="ok") == 1
    assert delta("weft_tool_calls_total", tool="add_to_cart", outcome="error") == 1
    assert delta("weft_tool_calls_total", tool="view_cart", outcome="ok") == 1
    assert (
        delta("weft_tool_calls_total", tool="other", outcome="error")
        + delta("weft_tool_calls_total", tool="other", outcome="protocol_error")
        == 1
    )  # an unknown name is not a label of its own
    assert delta("weft_tool_call_duration_seconds_count", tool="add_to_cart") == 2
    assert delta("weft_fallback_session_calls_total") == 1


async def test_redis_errors_are_counted() -> None:
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens there
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            before = samples((await client.get("/metrics")).text)
            result = await _call(client, "view_cart", {}, {"sessionId": "m-2"})
            after = samples((await client.get("/metrics")).text)
    assert result["isError"] is True
    errors = sum(v for (name, _), v in after.items() if name == "weft_redis_errors_total")
    errors -= sum(v for (name, _), v in before.items() if name == "weft_redis_errors_total")
    assert errors >= 1


@pytest.mark.e2e
@pytest.mark.redis
def test_metrics_sum_over_worker_processes(redis_url: str, key_prefix: str) -> None:
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": key_prefix}
    with ServeProcess(env=env, extra_args=["--workers", "2"]) as server, httpx.Client(timeout=10) as client:
        calls = 12
        for index in range(calls):
            message = tool_call_message("view_cart", meta={"sessionId": f"w-{index}"}, request_id=index)
            assert client.post(server.mcp_url, json=message, headers=JSON_HEADERS).status_code == 200
        # Every scrape, whichever worker answers it, reports all calls of both workers.
        totals = set()
        for _ in range(6):
            found = samples(client.get(f"{server.url}/metrics").text)
            totals.add(value(found, "weft_tool_calls_total", tool="view_cart", outcome="ok"))
        assert totals == {calls}
