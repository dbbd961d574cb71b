"""``WEFT_TRUSTED_PROXIES``: X-Forwarded-For is believed only from a listed proxy (real processes, real HTTP).

``/healthz`` reports the caller's address as the worker sees it, so the test reads what uvicorn
made of the header rather than a stub.
"""

from __future__ import annotations

import httpx
import pytest

from harness.processes import ServeProcess

pytestmark = pytest.mark.e2e

FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def client_seen(server: ServeProcess) -> str:
    return httpx.get(f"{server.url}/healthz", headers=FORWARDED, timeout=5).json()["client"]


def test_forwarded_for_is_honoured_only_from_a_trusted_proxy() -> None:
    with ServeProcess() as untrusting, ServeProcess(env={"WEFT_TRUSTED_PROXIES": "127.0.0.1"}) as trusting:
        assert client_seen(untrusting) == "127.0.0.1"  # default: nobody is trusted, the header is ignored
        assert client_seen(trusting) == "203.0.113.7"
    with ServeProcess(env={"WEFT_TRUSTED_PROXIES": "10.0.0.0/8"}) as other_proxy:
        assert client_seen(other_proxy) == "127.0.0.1"  # 127.0.0.1 is not in the trusted network
