"""Shared fixtures: a real Redis (found, started, or skipped with the reason) and store folders.

Markers mean what they say: a test that starts a redis-server (or uses ``redis_url``) is marked
``redis``, one that starts ``weft-mcp serve`` or nginx is marked ``e2e``. Each test runs with
``HARNESS_MAY_START`` set to its own markers, so ``harness.processes`` refuses (and the test fails)
when one is missing; ``pytest -m "not e2e and not redis"`` therefore starts no server.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.processes import MAY_START, RedisProcess
from tests.redis_server import RedisCluster, require_redis_server

SHARED_CATALOG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nitzat-haduvdevan-products.json"


SERVER_MARKERS = ("redis", "e2e")
REDIS_FIXTURES = {"redis_url", "redis_client", "private_redis", "redis_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a real Redis through a fixture must be marked ``redis``, even where an earlier
    test already started the session's server (the start-time check would not see it then)."""
    unmarked = [
        item.nodeid
        for item in items
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("redis") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that use a real Redis but are not marked redis: " + ", ".join(unmarked))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The processes this test may start (harness.processes.check_may_start): those its markers name."""
    os.environ[MAY_START] = ",".join(name for name in SERVER_MARKERS if item.get_closest_marker(name))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    os.environ.pop(MAY_START, None)  # fixtures of wider scope stop (never start) after the last test


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


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-primary Redis Cluster of private redis-servers, shared by the tests of a run that need one."""
    require_redis_server("for a Redis Cluster")
    cluster = RedisCluster(size=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


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


# The session's headless Chromium for the widget tests (tests/browser.py: skips with the reason when it is missing).
from tests.browser import chromium  # noqa: E402, F401
