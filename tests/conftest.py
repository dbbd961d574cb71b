"""Shared fixtures: a real Redis (found, started, or skipped with the reason) and store folders."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisProcess

SHARED_CATALOG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nitzat-haduvdevan-products.json"


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``WEFT_TEST_REDIS_URL``, else a private ``redis-server``, else testcontainers, else skip (or fail in CI)."""
    url = os.environ.get("WEFT_TEST_REDIS_URL")
    if url:
        yield url
        return
    if shutil.which("redis-server"):
        server = RedisProcess().start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    reason = "no real Redis: WEFT_TEST_REDIS_URL is unset, redis-server is not installed and no Docker engine answers"
    if os.environ.get("WEFT_TEST_REQUIRE_REDIS") == "1":
        pytest.fail(f"WEFT_TEST_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the real Redis, for tests that look at keys the service wrote."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    """A prefix of its own per test, so tests never see each other's carts on a shared Redis."""
    return f"weft-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def shared_catalog_file() -> Path:
    if not SHARED_CATALOG.is_file():
        pytest.skip(f"the shared scraped catalog is absent ({SHARED_CATALOG})")
    return SHARED_CATALOG.resolve()
