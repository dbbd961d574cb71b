"""The real-Redis backends of the store-level suites: ``redis`` (the session's redis-server, or
``WEFT_TEST_REDIS_URL``) and ``containers`` (the session's testcontainers Redis, tests/redis_container.py).

A suite's ``backend`` fixture lists ``*REAL_REDIS`` among its params and asks ``real_redis_url`` for the
address, so its fixtures start only the server the selected backend needs.
"""

from __future__ import annotations

import pytest

REAL_REDIS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("containers", marks=[pytest.mark.redis, pytest.mark.containers]),
]
REAL_REDIS_NAMES = ("redis", "containers")


def real_redis_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The URL of ``backend``'s server."""
    if backend not in REAL_REDIS_NAMES:
        raise ValueError(f"not a real-Redis backend: {backend!r}")
    return str(request.getfixturevalue("containers_redis_url" if backend == "containers" else "redis_url"))
