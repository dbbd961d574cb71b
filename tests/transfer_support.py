"""What the transfer tests share: stores on every backend, session keys on different cluster primaries,
a catalog stand-in for the claim's refresh, and readings of what Redis holds (never through a touching call)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import fakeredis

from service.cart_transfers import Refresh
from service.carts import SCAN_COUNT, CartStore, parse_line
from service.redis_clients import TEXT_REPLIES
from tests.redis_server import RedisCluster

SECRET = b"a-test-secret-of-32-bytes-at-least!"
CALLER = "203.0.113.7"
LIMITS: dict[str, Any] = {"max_quantity": 5, "max_lines": 3}
PRODUCTS = ("t:a", "t:b", "t:c", "t:d", "t:e")
CATALOG = {product: (f"Fresh {product}", Decimal(f"{index + 1}.75")) for index, product in enumerate(PRODUCTS)}
OLD_PRICE = Decimal("1.00")


def catalog(gone: Iterable[str] = ()) -> Refresh:
    """The Shop's refresh over ``CATALOG``: current name and price, None for a product ``gone``."""
    missing = set(gone)

    def refresh(product_id: str) -> tuple[str, Decimal] | None:
        return None if product_id in missing else CATALOG.get(product_id)

    return refresh


def connect(
    backend: str,
    key_prefix: str,
    *,
    redis_url: str | None = None,
    cluster: RedisCluster | None = None,
    server: fakeredis.FakeServer | None = None,
    **options: Any,
) -> CartStore:
    """A store on ``backend``: ``embedded`` (fakeredis; ``server`` shares one between stores, as two workers
    would share a Redis), ``redis`` or ``containers`` (``redis_url``) or ``cluster`` (any node of ``cluster``)."""
    options = {"key_prefix": key_prefix, **LIMITS, **options}
    if backend == "embedded":
        client = fakeredis.FakeAsyncRedis(server=server or fakeredis.FakeServer(), **TEXT_REPLIES)
        return CartStore(client, backend="embedded", **options)
    if backend in ("redis", "containers"):
        return CartStore.connect(redis_url, **options)
    assert cluster is not None
    return CartStore.connect(cluster.url, cluster=True, **options)


async def drop_keys(store: CartStore) -> None:
    """Delete every key under the store's prefix (one by one: on a cluster they sit in many slots)."""
    async for key in store.client.scan_iter(match=f"{store.key_prefix}:*", count=SCAN_COUNT):
        await store.client.delete(key)


async def apart(store: CartStore, first: str, second: str) -> tuple[str, str]:
    """Two session keys named after ``first`` and ``second``; on a cluster, whose carts sit on different
    primaries (checked with the server's CLUSTER KEYSLOT and its slot map, not only redis-py's hashing)."""
    if store.backend != "redis-cluster":
        return first, second
    client = store.client
    await client.initialize()
    first_node = await primary_of(store, store.cart_key(first))
    for index in range(100):
        candidate = f"{second}-{index}"
        if await primary_of(store, store.cart_key(candidate)) != first_node:
            return first, candidate
    raise AssertionError("no session key on another primary in 100 tries")


async def primary_of(store: CartStore, key: str) -> str:
    """The address of the primary that serves ``key``'s slot, as the cluster itself reports it."""
    slot = int(await store.client.execute_command("CLUSTER KEYSLOT", key))
    assert slot == store.client.keyslot(key)
    slots = await store.client.execute_command("CLUSTER SLOTS")  # {(start, end): {"primary": (host, port)}}
    for (start, end), served in slots.items():
        if start <= slot <= end:
            host, port = served["primary"]
            assert store.client.get_node_from_key(key).name == f"{host}:{port}"  # redis-py routes it there too
            return f"{host}:{port}"
    raise AssertionError(f"slot {slot} is not served")


def quantities_of(fields: dict[str, str]) -> dict[str, int]:
    """Readable lines of a stored hash (a cart or an outbox): product id -> quantity."""
    found = {}
    for field, value in fields.items():
        line = parse_line(field, value)
        if line is not None:
            found[field] = line.quantity
    return found


async def held(store: CartStore, session_key: str) -> dict[str, int]:
    """What the cart holds (HGETALL: reading it this way is no access)."""
    return quantities_of(await store.client.hgetall(store.cart_key(session_key)))


async def in_outbox(store: CartStore, session_key: str) -> dict[str, int]:
    return quantities_of(await store.client.hgetall(store.transfers.outbox_key(session_key)))


async def units(store: CartStore, *session_keys: str) -> int:
    """Units in these carts plus their outboxes whose claim has not been applied yet: what a claim conserves."""
    total = 0
    for session_key in session_keys:
        total += sum((await held(store, session_key)).values())
        outbox = await store.client.hgetall(store.transfers.outbox_key(session_key))
        if outbox:
            marker = store.transfers.marker_key(outbox["_to"], outbox["_id"])
            if not await store.client.exists(marker):
                total += sum(quantities_of(outbox).values())
    return total


async def every_key(store: CartStore) -> dict[str, Any]:
    """Every key under the prefix with its value, whatever its type (for 'never stored in clear')."""
    found: dict[str, Any] = {}
    async for key in store.client.scan_iter(match=f"{store.key_prefix}:*", count=SCAN_COUNT):
        kind = await store.client.type(key)
        if kind == "hash":
            found[key] = await store.client.hgetall(key)
        elif kind == "string":
            found[key] = await store.client.get(key)
        else:
            found[key] = kind
    return found


def dump(keys: dict[str, Any]) -> str:
    return json.dumps(keys, sort_keys=True, ensure_ascii=False)


async def fill(store: CartStore, session_key: str, lines: dict[str, int], price: Decimal = OLD_PRICE) -> None:
    for product_id, quantity in lines.items():
        await store.add(session_key, product_id, quantity, f"Old {product_id}", price)
