"""Graceful shutdown of a real ``weft-mcp serve``: SIGTERM turns /readyz 503 first, in-flight calls finish."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.processes import ServeProcess
from tests.jsonrpc import JSON_HEADERS, call_tool, tool_call_message

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

DRAIN_SECONDS = 2.0


def slow_body(message: dict, seconds: float) -> Iterator[bytes]:
    """A request body that takes ``seconds`` to arrive: a call still in flight when the drain ends."""
    data = json.dumps(message).encode()
    half = len(data) // 2
    yield data[:half]
    time.sleep(seconds)
    yield data[half:]


def test_sigterm_drains_then_finishes_in_flight_calls_and_exits_0(redis_url: str, key_prefix: str) -> None:
    env = {
        "WEFT_REDIS_URL": redis_url,
        "WEFT_KEY_PREFIX": key_prefix,
        "WEFT_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    server = ServeProcess(env=env).start()
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        in_flight: dict[str, object] = {}
        message = tool_call_message("add_to_cart", {"product_id": "demo-market:i1101"}, meta={"sessionId": "slow"})

        def slow_call() -> None:
            response = httpx.post(
                server.mcp_url, content=slow_body(message, DRAIN_SECONDS + 1.5), headers=JSON_HEADERS, timeout=20
            )
            in_flight["status"] = response.status_code
            in_flight["result"] = response.json()["result"]

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)  # the slow call is now in flight
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()

        # Draining: not ready, but alive and still serving tool calls.
        deadline = sigterm_at + DRAIN_SECONDS - 0.5
        while (ready := httpx.get(f"{server.url}/readyz", timeout=5)).status_code != 503:
            assert time.monotonic() < deadline, "/readyz never turned 503"
            time.sleep(0.05)
        assert ready.json()["status"] == "draining"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        during = call_tool(server.mcp_url, "add_to_cart", {"product_id": "demo-market:i1101"}, session="draining")
        assert not during.get("isError"), during
        assert time.monotonic() - sigterm_at < DRAIN_SECONDS  # all of the above happened inside the drain

        caller.join(timeout=20)
        assert in_flight.get("status") == 200 and not in_flight["result"].get("isError"), in_flight
        exit_code = server.process.wait(timeout=15)
        assert exit_code == 0
        log = server.log_text()
        assert "draining for 2 s" in log
        assert "Cart storage closed: redis" in log
        # After the drain the socket is closed: nothing answers any more.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=2)
    finally:
        server.stop()
