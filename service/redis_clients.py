"""The asyncio Redis client for a deployment: one server, a Redis Cluster, or a Sentinel-watched primary.

Every topology gets the same socket timeouts and the same retry policy: none. A cart script
that timed out may have run, so running it again could add twice; the caller gets an error
within about 2 s instead and decides. Only redirections that prove nothing ran (a cluster's
``MOVED``/``ASK``) are followed, by redis-py itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

HEALTH_CHECK_SECONDS = 30
FAILOVER_WAIT_SECONDS = 1.5  # inside the ~2 s a tool call may take to fail


class FailoverWaitingConnection(SentinelManagedConnection):
    """A connection to the Sentinels' primary that, during a failover, waits for the new one.

    Only *connecting* is repeated: a refused connection or "no primary known yet"
    (``MasterNotFoundError``) proves no command was sent, so waiting and asking the Sentinels
    again is safe, unlike repeating a command that may have run. The wait is bounded, so a
    long failover still answers "unavailable, retry" in time.
    """

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + FAILOVER_WAIT_SECONDS, 0.05
        while True:
            try:
                await super().connect()
                return
            except RedisConnectionError:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)


# Replies as text. Bytes that are not UTF-8 (a key written by hand, or damaged) become U+FFFD instead of
# failing the whole reply after the script already ran: the cart parser then sees an unreadable line.
TEXT_REPLIES: dict[str, Any] = {"decode_responses": True, "encoding_errors": "replace"}


def _connection_options(connect_timeout: float, socket_timeout: float) -> dict[str, Any]:
    return {
        **TEXT_REPLIES,
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        # No blind retries: a timed-out script may have run, and running it again would add twice.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": HEALTH_CHECK_SECONDS,
    }


def parse_sentinels(items: Sequence[str]) -> list[tuple[str, int]]:
    """``["10.0.0.1:26379", "[::1]:26379"]`` -> ``[("10.0.0.1", 26379), ("::1", 26379)]``."""
    sentinels = []
    for item in items:
        host, _, port = item.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def open_client(
    redis_url: str | None,
    *,
    cluster: bool = False,
    sentinels: Sequence[str] = (),
    sentinel_service: str = "mymaster",
    connect_timeout: float = 1.0,
    socket_timeout: float = 1.5,
) -> tuple[Any, str]:
    """The client and its backend name (``redis``, ``redis-cluster`` or ``redis-sentinel``).

    Cluster: ``redis_url`` names any node; redis-py discovers the others and routes each key
    to its slot's primary. Sentinel: the Sentinels name the primary, and redis-py asks them
    again whenever a connection to it fails; ``redis_url``, when given, supplies only the
    primary's password and database.
    """
    options = _connection_options(connect_timeout, socket_timeout)
    if cluster:
        if redis_url is None:
            raise ValueError("a Redis Cluster needs a URL naming one of its nodes")
        return RedisCluster.from_url(redis_url, **options), "redis-cluster"
    if sentinels:
        url_options = parse_url(redis_url) if redis_url else {}
        for name in ("username", "password", "db"):
            if name in url_options:
                options[name] = url_options[name]
        sentinel_options = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            **TEXT_REPLIES,
        }
        manager = Sentinel(parse_sentinels(sentinels), sentinel_kwargs=sentinel_options)
        client = manager.master_for(sentinel_service, connection_class=FailoverWaitingConnection, **options)
        return client, "redis-sentinel"
    if redis_url is None:
        raise ValueError("no Redis URL")
    return redis.Redis.from_url(redis_url, **options), "redis"


async def close_client(client: Any) -> None:
    """Close the client's pool and, for Sentinel, the connections to the Sentinels themselves."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
