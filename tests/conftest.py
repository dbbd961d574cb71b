"""Shared fixtures: a real Redis (found, started, or skipped with the reason), a Redis in a container
(the ``containers`` backend, tests/redis_container.py) and store folders.

Markers mean what they say: a test that starts a redis-server (or uses ``redis_url``) is marked
``redis``, one that starts ``weft-mcp serve`` or nginx is marked ``e2e``. Each test runs with
``HARNESS_MAY_START`` set to its own markers, so ``harness.processes`` refuses (and the test fails)
when one is missing; ``pytest -m "not e2e and not redis"`` therefore starts no server.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.processes import MAY_START, RedisProcess
from tests.podman_engine import PodmanService, why_no_podman
from tests.redis_container import (
    DOCKER_SOCKET,
    LEG,
    ContainerRedis,
    Engine,
    NoEngine,
    ensure_image,
    external_engine,
    image_name,
    labelled,
    remove_orphans,
)
from tests.redis_server import RedisCluster, require_redis_server

SHARED_CATALOG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nitzat-haduvdevan-products.json"


SERVER_MARKERS = ("redis", "e2e")
REDIS_FIXTURES = {
    "redis_url",
    "redis_client",
    "private_redis",
    "redis_cluster",
    "containers_redis",
    "containers_redis_url",
}


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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``WEFT_TEST_REDIS_URL``, else a private ``redis-server``, else skip (or fail in CI). A Redis in a
    container is the separate ``containers`` backend (``containers_redis_url``)."""
    url = os.environ.get("WEFT_TEST_REDIS_URL")
    if url:
        yield url
        return
    require_redis_server()
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """One private rootful podman per session, shared by the containers backend and the stack test: one
    service on one storage, so the offline images are built once and nothing races over them."""
    with tempfile.TemporaryDirectory(prefix="weft-podman-") as folder:
        engine = PodmanService(Path(folder)).start()
        try:
            yield engine
        finally:
            engine.stop()


def _container_engine(request: pytest.FixtureRequest) -> Engine:
    """A Docker engine that answers, else the session's private podman, else NoEngine with the reason."""
    engine = external_engine()
    if engine is not None:
        return engine
    reason = why_no_podman()
    if reason:
        raise NoEngine(f"DOCKER_HOST is unset, nothing answers on {DOCKER_SOCKET}, and podman cannot run: {reason}")
    try:
        podman: PodmanService = request.getfixturevalue("podman_service")
    except RuntimeError as error:  # installed, but its service would not answer
        raise NoEngine(f"the private podman service did not start: {error}") from error
    version = podman.podman("--version").stdout.strip()
    return Engine(podman.env["DOCKER_HOST"], f"{version} (private service)", {**podman.env, "ENGINE": "podman"})


@pytest.fixture(scope="session")
def containers_redis(request: pytest.FixtureRequest) -> Iterator[ContainerRedis]:
    """One testcontainers Redis for the session (the ``containers`` backend), removed at the end however the
    tests went; the session fails if any container of it is left. Skipped with the reason when no engine or
    image can be had; ``WEFT_TEST_REQUIRE_CONTAINERS=1`` (set by .ci/run) makes that a failure."""
    LEG.image = image_name()
    try:
        start = time.monotonic()
        engine = _container_engine(request)
        LEG.timings["engine"] = f"{time.monotonic() - start:.1f} s"
        LEG.engine = engine.description
        start = time.monotonic()
        LEG.timings[f"image {ensure_image(engine, LEG.image)}"] = f"{time.monotonic() - start:.1f} s"
        remove_orphans(engine)
    except NoEngine as reason:
        LEG.skipped = str(reason)
        if os.environ.get("WEFT_TEST_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"WEFT_TEST_REQUIRE_CONTAINERS=1 but {reason}")
        pytest.skip(str(reason))
    container = ContainerRedis(engine, LEG.image)
    try:
        start = time.monotonic()
        container.start()
        LEG.timings["container start"] = f"{time.monotonic() - start:.1f} s"
        yield container
    finally:
        start = time.monotonic()
        container.stop()
        LEG.timings["stop"] = f"{time.monotonic() - start:.1f} s"
        left = labelled(engine, container.label)
        for leftover in left:
            leftover.remove(force=True, v=True)
        assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture
def containers_redis_url(containers_redis: ContainerRedis) -> str:
    """The session's container Redis. Tests clean up their own key prefix, as on the redis-server backend (a
    FLUSHALL between tests would also reset the key table's size, which the shared server never sees)."""
    return containers_redis.url


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the outcomes of the tests that ran on the containers backend, for the summary line."""
    if "containers" not in report.keywords:
        return
    LEG.test_seconds += report.duration
    outcome = None
    if report.when == "call":
        outcome = report.outcome
    elif report.failed:
        outcome = "errors"
    elif report.skipped:
        outcome = "skipped"
    if outcome:
        LEG.outcomes[outcome] = LEG.outcomes.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = LEG.summary()
    if line:
        terminalreporter.write_line(line)


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
from tests.browser import chromium, context, host  # noqa: E402, F401
