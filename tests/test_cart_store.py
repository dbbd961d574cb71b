"""Contract tests for ``service.carts.CartStore``: one suite, run on every backend.

Backends: ``embedded`` (``CartStore.connect(None)``, in-process fakeredis), ``fakeredis`` (a
``FakeAsyncRedis`` handed to the constructor), ``redis`` (a real server from the session
``redis_url`` fixture) and ``containers`` (the session's testcontainers Redis), each requested only
when that backend is selected (tests/redis_backends.py). Each test has a key prefix of its own and
deletes its keys at teardown, so a shared Redis is never flushed.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.synchronize
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import fakeredis
import pytest
import pytest_asyncio
import redis

from service.carts import LAST_ACCESSED_FIELD, SCAN_COUNT, Cart, CartRejected, CartStorageError, CartStore
from service.redis_clients import TEXT_REPLIES
from tests.redis_backends import REAL_REDIS, REAL_REDIS_NAMES, real_redis_url

SESSION = "s1"
HEBREW_NAME = "ריבת תות שדה"
PRICE = Decimal("24.40")
SMALL_LIMITS: dict[str, Any] = {"max_quantity": 5, "max_lines": 3}


class StoreFactory(Protocol):
    def __call__(self, **options: Any) -> CartStore: ...


@pytest.fixture(params=["embedded", "fakeredis", *REAL_REDIS])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def make_store(request: pytest.FixtureRequest, backend: str, key_prefix: str) -> AsyncIterator[StoreFactory]:
    """Build stores on the selected backend (small limits unless overridden); close and clean up after."""
    redis_url: str | None = real_redis_url(request, backend) if backend in REAL_REDIS_NAMES else None
    stores: list[CartStore] = []

    def factory(**options: Any) -> CartStore:
        options = {"key_prefix": key_prefix, **SMALL_LIMITS, **options}
        if backend == "fakeredis":
            store = CartStore(fakeredis.FakeAsyncRedis(**TEXT_REPLIES), backend="fakeredis", **options)
        else:
            store = CartStore.connect(redis_url, **options)
        assert store.backend == ("redis" if backend == "containers" else backend)
        stores.append(store)
        return store

    yield factory
    for store in stores:  # every key this test wrote starts with its key_prefix (other stores add a suffix)
        try:
            keys = [key async for key in store.client.scan_iter(match=f"{key_prefix}*", count=SCAN_COUNT)]
            if keys:
                await store.client.delete(*keys)
        finally:
            await store.aclose()


@pytest_asyncio.fixture
async def store(make_store: StoreFactory) -> CartStore:
    """The default store: max_quantity=5, max_lines=3, no TTL."""
    return make_store()


async def add(store: CartStore, product_id: str, quantity: int = 1, session: str = SESSION) -> Cart:
    return await store.add(session, product_id, quantity, f"Product {product_id}", PRICE)


async def raw(store: CartStore, session: str = SESSION) -> dict[str, str]:
    return dict(await store.client.hgetall(store.cart_key(session)))


async def exists(store: CartStore, session: str = SESSION) -> int:
    return int(await store.client.exists(store.cart_key(session)))


def quantities(cart: Cart) -> dict[str, int]:
    return {line.product_id: line.quantity for line in cart.lines}


# 1-2. Reading and the stored layout


async def test_view_of_unknown_cart_is_empty_and_writes_nothing(store: CartStore) -> None:
    """Reading a cart that does not exist returns an empty cart and creates no key."""
    cart = await store.view(SESSION)
    assert cart.is_empty
    assert cart.lines == ()
    assert cart.last_accessed is None
    assert await exists(store) == 0
    assert await store.count_carts() == 0


async def test_add_stores_one_readable_hash_per_cart(store: CartStore, key_prefix: str) -> None:
    """add writes ``<prefix>:cart:{session}`` as a HASH of compact, readable JSON lines plus ``_last_accessed``."""
    cart = await store.add(SESSION, "t:p-42", 2, HEBREW_NAME, PRICE)

    key = store.cart_key(SESSION)
    assert key == f"{key_prefix}:cart:{{{SESSION}}}"
    assert await store.client.type(key) == "hash"
    assert [k async for k in store.client.scan_iter(match=f"{key_prefix}:*")] == [key]

    fields = await raw(store)
    assert set(fields) == {"t:p-42", LAST_ACCESSED_FIELD}
    value = fields["t:p-42"]
    assert json.loads(value) == {"q": 2, "n": HEBREW_NAME, "p": "24.40"}
    assert HEBREW_NAME in value and "\\u" not in value
    assert value.startswith('{"q":2,') and " " not in value.replace(HEBREW_NAME, "")
    assert abs(int(fields[LAST_ACCESSED_FIELD]) - time.time()) < 5

    assert [(line.product_id, line.quantity, line.name, line.price) for line in cart.lines] == [
        ("t:p-42", 2, HEBREW_NAME, Decimal("24.40"))
    ]
    assert cart.last_accessed == int(fields[LAST_ACCESSED_FIELD])


# 3. Adding


async def test_add_sums_existing_line_and_appends_new_line(store: CartStore) -> None:
    """Adding to a line sums the quantities; another product makes a second line; the result reflects both."""
    await store.add(SESSION, "t:a", 1, "Apricot jam", Decimal("10.5"))
    cart = await store.add(SESSION, "t:a", 2, "Apricot jam", Decimal("10.5"))
    assert quantities(cart) == {"t:a": 3}

    cart = await store.add(SESSION, "t:b", 4, "Blueberry jam", Decimal("7"))
    assert quantities(cart) == {"t:a": 3, "t:b": 4}
    assert [line.price for line in cart.lines] == [Decimal("10.50"), Decimal("7.00")]
    assert all(isinstance(line.price, Decimal) for line in cart.lines)

    fields = await raw(store)
    assert json.loads(fields["t:a"])["q"] == 3
    assert json.loads(fields["t:b"]) == {"q": 4, "n": "Blueberry jam", "p": "7.00"}
    assert quantities(await store.view(SESSION)) == {"t:a": 3, "t:b": 4}


# 4. Limits


async def test_quantity_limit_rejects_and_changes_nothing(store: CartStore) -> None:
    """Going past max_quantity raises CartRejected("quantity_limit", current) and leaves the hash untouched."""
    await add(store, "t:a", 4)
    await store.client.hset(store.cart_key(SESSION), LAST_ACCESSED_FIELD, "1000")  # an old stamp, to see a touch
    before = await raw(store)

    with pytest.raises(CartRejected) as caught:
        await add(store, "t:a", 2)
    assert (caught.value.reason, caught.value.current) == ("quantity_limit", 4)
    assert await raw(store) == before

    with pytest.raises(CartRejected) as caught:
        await add(store, "t:b", 6)
    assert (caught.value.reason, caught.value.current) == ("quantity_limit", 0)
    assert await raw(store) == before

    cart = await add(store, "t:a", 1)  # exactly up to the limit is fine
    assert quantities(cart) == {"t:a": 5}


async def test_line_limit_rejects_new_line_but_allows_existing(store: CartStore) -> None:
    """A new line past max_lines raises CartRejected("line_limit") and changes nothing; existing lines still grow."""
    for product in ("t:a", "t:b", "t:c"):
        await add(store, product)
    await store.client.hset(store.cart_key(SESSION), LAST_ACCESSED_FIELD, "1000")
    before = await raw(store)

    with pytest.raises(CartRejected) as caught:
        await add(store, "t:d")
    assert (caught.value.reason, caught.value.current) == ("line_limit", 3)
    assert await raw(store) == before

    cart = await add(store, "t:a", 2)
    assert quantities(cart) == {"t:a": 3, "t:b": 1, "t:c": 1}


# 5. Setting quantities and removing


async def test_set_quantity_changes_and_zero_removes_line(store: CartStore) -> None:
    """set_quantity overwrites the quantity (keeping name and price); 0 removes the line."""
    await store.add(SESSION, "t:a", 1, HEBREW_NAME, PRICE)
    await add(store, "t:b", 2)

    cart = await store.set_quantity(SESSION, "t:a", 4)
    assert quantities(cart) == {"t:a": 4, "t:b": 2}
    assert json.loads((await raw(store))["t:a"]) == {"q": 4, "n": HEBREW_NAME, "p": "24.40"}

    cart = await store.set_quantity(SESSION, "t:a", 0)
    assert quantities(cart) == {"t:b": 2}
    assert set(await raw(store)) == {"t:b", LAST_ACCESSED_FIELD}


async def test_removing_last_line_deletes_key(store: CartStore) -> None:
    """A cart with no lines has no key: remove (or set_quantity 0) of the last line deletes it."""
    await add(store, "t:a")
    await add(store, "t:b")
    await store.remove(SESSION, "t:a")
    assert await exists(store) == 1

    cart = await store.remove(SESSION, "t:b")
    assert cart.is_empty
    assert await exists(store) == 0

    await add(store, "t:c")
    assert (await store.set_quantity(SESSION, "t:c", 0)).is_empty
    assert await exists(store) == 0


@pytest.mark.parametrize("operation", ["set_quantity", "remove"])
async def test_change_of_absent_line_is_rejected_and_writes_nothing(store: CartStore, operation: str) -> None:
    """set_quantity/remove of a product not in the cart raise "not_in_cart" and write nothing."""

    async def change(product: str) -> Cart:
        if operation == "remove":
            return await store.remove(SESSION, product)
        return await store.set_quantity(SESSION, product, 2)

    with pytest.raises(CartRejected) as caught:
        await change("t:a")
    assert caught.value.reason == "not_in_cart"
    assert await exists(store) == 0

    await add(store, "t:a")
    await store.client.hset(store.cart_key(SESSION), LAST_ACCESSED_FIELD, "1000")
    before = await raw(store)
    with pytest.raises(CartRejected) as caught:
        await change("t:b")
    assert caught.value.reason == "not_in_cart"
    assert await raw(store) == before


# 6. Clearing


async def test_clear_deletes_key_and_absent_cart_is_fine(store: CartStore) -> None:
    """clear deletes the cart's key; clearing a cart that does not exist is not an error."""
    await add(store, "t:a")
    await add(store, "t:b")
    assert (await store.clear(SESSION)).is_empty
    assert await exists(store) == 0
    assert (await store.view(SESSION)).is_empty

    assert (await store.clear("never-used")).is_empty
    assert await exists(store, "never-used") == 0


# 7. Expiry


async def test_ttl_zero_means_no_expiry(make_store: StoreFactory) -> None:
    """With ttl_seconds=0 the cart key never expires (TTL -1), after writes and reads alike."""
    store = make_store(ttl_seconds=0)
    await add(store, "t:a")
    assert await store.client.ttl(store.cart_key(SESSION)) == -1
    await store.view(SESSION)
    await store.set_quantity(SESSION, "t:a", 2)
    assert await store.client.ttl(store.cart_key(SESSION)) == -1


async def test_sliding_ttl_is_refreshed_by_every_access(make_store: StoreFactory) -> None:
    """With ttl_seconds=100 writes set the TTL and a plain view slides it back up and restamps _last_accessed."""
    store = make_store(ttl_seconds=100)
    key = store.cart_key(SESSION)
    await add(store, "t:a")
    assert 90 < await store.client.ttl(key) <= 100

    await store.client.expire(key, 5)
    await store.client.hset(key, LAST_ACCESSED_FIELD, "1000")
    cart = await store.view(SESSION)
    assert 90 < await store.client.ttl(key) <= 100
    stamp = int((await raw(store))[LAST_ACCESSED_FIELD])
    assert abs(stamp - time.time()) < 5
    assert cart.last_accessed == stamp

    await store.client.expire(key, 5)
    await store.set_quantity(SESSION, "t:a", 2)
    assert 90 < await store.client.ttl(key) <= 100


async def test_turning_expiry_off_makes_existing_carts_permanent(make_store: StoreFactory) -> None:
    """A cart written while a TTL was set stops expiring at its next access once the TTL setting is 0."""
    with_ttl = make_store(ttl_seconds=100)
    without_ttl = CartStore(with_ttl.client, backend=with_ttl.backend, key_prefix=with_ttl.key_prefix, ttl_seconds=0)
    await add(with_ttl, "t:a")
    assert await with_ttl.client.ttl(with_ttl.cart_key(SESSION)) > 0
    await without_ttl.view(SESSION)
    assert await without_ttl.client.ttl(without_ttl.cart_key(SESSION)) == -1


# Bad calls are refused before anything is written


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.add(SESSION, "t:a", 0, "A", PRICE), ValueError),
        (lambda s: s.add(SESSION, "t:a", -2, "A", PRICE), ValueError),
        (lambda s: s.add(SESSION, "t:a", True, "A", PRICE), ValueError),
        (lambda s: s.add(SESSION, LAST_ACCESSED_FIELD, 1, "A", PRICE), ValueError),
        (lambda s: s.set_quantity(SESSION, "t:a", -1), ValueError),
        (lambda s: s.set_quantity(SESSION, "t:a", 6), CartRejected),
        (lambda s: s.remove(SESSION, LAST_ACCESSED_FIELD), ValueError),
    ],
)
async def test_bad_store_calls_change_nothing(
    store: CartStore, call: Callable[[CartStore], Awaitable[Cart]], error: type[Exception]
) -> None:
    """The store guards itself too: bad quantities or ids raise before the script runs."""
    await add(store, "t:a", 2)
    before = await raw(store)
    with pytest.raises(error):
        await call(store)
    assert await raw(store) == before


# 8. Isolation


async def test_sessions_are_isolated(store: CartStore) -> None:
    """Two sessions have separate carts: lines, changes and clears in one never show in the other."""
    await add(store, "t:a", 2, session="alice")
    await add(store, "t:b", 3, session="bob")
    assert quantities(await store.view("alice")) == {"t:a": 2}
    assert quantities(await store.view("bob")) == {"t:b": 3}

    with pytest.raises(CartRejected):
        await store.remove("bob", "t:a")
    await store.clear("alice")
    assert quantities(await store.view("bob")) == {"t:b": 3}
    assert await exists(store, "alice") == 0


# 9. Counting


async def test_count_carts_counts_only_this_prefix(store: CartStore, key_prefix: str) -> None:
    """count_carts counts the carts under this prefix only, and follows deletions."""
    other = CartStore(store.client, backend=store.backend, key_prefix=f"{key_prefix}-other")
    for session in ("s1", "s2", "s3"):
        await add(store, "t:a", session=session)
    await add(other, "t:a", session="s1")
    await store.client.set(f"{key_prefix}:not-a-cart", "x")
    await store.view("only-read")  # reading creates no cart

    assert await store.count_carts() == 3
    assert await other.count_carts() == 1
    await store.clear("s2")
    assert await store.count_carts() == 2


async def test_count_carts_is_exact_across_scan_pages(store: CartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more carts than one SCAN page (COUNT 1000) count_carts follows the cursor and counts each once."""
    total = 1200
    line = {"t:a": '{"q":1,"n":"x","p":"1.00"}', LAST_ACCESSED_FIELD: str(int(time.time()))}
    async with store.client.pipeline(transaction=False) as pipe:
        for i in range(total):
            pipe.hset(store.cart_key(f"bulk-{i}"), mapping=line)
        await pipe.execute()

    scan = store.client.scan
    scan_calls = 0

    async def counting_scan(*args: Any, **kwargs: Any) -> Any:
        nonlocal scan_calls
        scan_calls += 1
        return await scan(*args, **kwargs)

    monkeypatch.setattr(store.client, "scan", counting_scan)
    assert await store.count_carts() == total
    assert scan_calls >= 2


# 10. Robustness


# Values written by hand (redis-cli HSET) on a real cart key: none is a readable line.
GARBAGE_LINES: dict[str, str] = {
    "t:negative": '{"q":-3,"n":"\\u001b[31mx","p":"-5"}',
    "t:huge-float": '{"q":1e308,"n":"x","p":"1.00"}',
    "t:huge-int": '{"q":' + "9" * 300 + ',"n":"x","p":"1.00"}',
    "t:too-many": '{"q":1000001,"n":"x","p":"1.00"}',
    "t:zero": '{"q":0,"n":"x","p":"1.00"}',
    "t:text-q": '{"q":"x","n":"x","p":"1.00"}',
    "t:fraction-q": '{"q":1.5,"n":"x","p":"1.00"}',
    "t:bool-q": '{"q":true,"n":"x","p":"1.00"}',
    "t:garbage": "garbage",
    "t:list": "[1,2]",
    "t:only-q": '{"q":"x"}',
    "t:no-name": '{"q":1,"p":"1.00"}',
    "t:number-name": '{"q":1,"n":5,"p":"1.00"}',
    "t:bad-price": '{"q":1,"n":"x","p":"cheap"}',
    "t:free": '{"q":1,"n":"x","p":"0.00"}',
    "t:three-places": '{"q":1,"n":"x","p":"1.005"}',
    "t:float-price": '{"q":1,"n":"x","p":1.5}',
    "t:huge-price": '{"q":1,"n":"x","p":"1234567890123.00"}',
    "t:nan-price": '{"q":1,"n":"x","p":"NaN"}',
    "ZQXforeign": '{"q":1,"n":"x","p":"1.00"}',  # a well-formed value under a field that is no product id
    "t:\x1b[31m": '{"q":1,"n":"x","p":"1.00"}',  # a product id carrying an escape sequence
}


async def plant_garbage(store: CartStore, session: str = SESSION, lines: dict[str, str] = GARBAGE_LINES) -> None:
    await store.client.hset(store.cart_key(session), mapping=lines)


async def test_unreadable_lines_are_left_out_counted_and_never_totalled(store: CartStore) -> None:
    """Every garbage value is left out of the cart and counted as damaged; the readable line stays usable."""
    await add(store, "t:good", 2)
    await plant_garbage(store)

    cart = await store.view(SESSION)
    assert quantities(cart) == {"t:good": 2}
    assert cart.damaged_lines == len(GARBAGE_LINES)
    assert quantities(await add(store, "t:good")) == {"t:good": 3}
    assert (await store.set_quantity(SESSION, "t:good", 1)).damaged_lines == len(GARBAGE_LINES)


@pytest.mark.parametrize("field", sorted(GARBAGE_LINES))
async def test_one_garbage_line_alone_is_damaged_not_an_empty_cart(store: CartStore, field: str) -> None:
    await plant_garbage(store, lines={field: GARBAGE_LINES[field]})
    cart = await store.view(SESSION)
    assert (cart.lines, cart.damaged_lines) == ((), 1)


async def test_bytes_that_are_not_utf8_make_a_damaged_line_not_a_failed_call(make_store: StoreFactory) -> None:
    """A line whose value or field is not UTF-8 is one damaged line: the call answers (it used to fail after its
    script had run, so a change was saved while the client heard "error"), and sweeps report the key."""
    store = make_store(max_lines=10)
    await add(store, "t:good")
    bad = {b"t:bad": b'\xff\xfe{"q":1}', b"t:i11\xff": b'{"q":1,"n":"x","p":"1.00"}'}
    await store.client.hset(store.cart_key(SESSION), mapping=bad)  # type: ignore[arg-type]
    cart = await store.view(SESSION)
    assert (quantities(cart), cart.damaged_lines) == ({"t:good": 1}, 2)
    cart = await add(store, "t:other", 2)
    assert (quantities(cart), cart.damaged_lines) == ({"t:good": 1, "t:other": 2}, 2)
    assert (quantities(await store.set_quantity(SESSION, "t:good", 3)))["t:good"] == 3
    counted = await store.count_with_damage(now=NOW)
    assert counted.carts == 0 and list(counted.damage.reasons) == [store.cart_key(SESSION)]
    detail = await store.cart_detail(SESSION, now=NOW)
    assert sum(1 for line in detail.lines if line.get("damaged")) == 2
    assert (await store.clear(SESSION)).is_empty and not await exists(store)


async def test_names_reach_the_client_without_control_characters(store: CartStore) -> None:
    await store.client.hset(store.cart_key(SESSION), "t:x", '{"q":2,"n":"\\u001b[31mRed\\u0007 jam\\n","p":"3.50"}')
    cart = await store.view(SESSION)
    assert [(line.name, line.quantity) for line in cart.lines] == [("Red jam ", 2)]


@pytest.mark.parametrize("value", ["garbage", '{"q":-3,"n":"x","p":"1.00"}', '{"q":1,"n":"x","p":"0"}'])
async def test_add_and_update_refuse_a_damaged_line_and_change_nothing(store: CartStore, value: str) -> None:
    """The scripts never build on a line they cannot read: add and update say so; removing it works."""
    await add(store, "t:good")
    await store.client.hset(store.cart_key(SESSION), "t:bad", value)
    before = await raw(store)
    for change in (lambda: add(store, "t:bad", 2), lambda: store.set_quantity(SESSION, "t:bad", 3)):
        with pytest.raises(CartRejected) as raised:
            await change()
        assert raised.value.reason == "damaged_line"
        assert await raw(store) == before
    cart = await store.remove(SESSION, "t:bad")
    assert (quantities(cart), cart.damaged_lines) == ({"t:good": 1}, 0)
    assert "t:bad" not in await raw(store)


async def test_removing_the_last_line_leaves_no_key_even_with_a_stamp(store: CartStore) -> None:
    await add(store, "t:a")
    await store.remove(SESSION, "t:a")
    assert await exists(store) == 0


# 11-12. Concurrency


async def test_concurrent_adds_lose_nothing(make_store: StoreFactory) -> None:
    """50 concurrent adds of 1 to one line end at exactly 50, and 50 more at 100 (the script's RMW is atomic)."""
    store = make_store(max_quantity=1000)
    await asyncio.gather(*(add(store, "t:a") for _ in range(50)))  # racing to create the line
    assert quantities(await store.view(SESSION)) == {"t:a": 50}
    await asyncio.gather(*(add(store, "t:a") for _ in range(50)))  # racing on an existing line
    assert quantities(await store.view(SESSION)) == {"t:a": 100}
    assert json.loads((await raw(store))["t:a"])["q"] == 100


def _add_in_process(redis_url: str, key_prefix: str, adds: int, start: multiprocessing.synchronize.Barrier) -> None:
    """Worker for the multi-process test: connect, wait for the other worker, then add 1 ``adds`` times."""

    async def run() -> None:
        store = CartStore.connect(redis_url, key_prefix=key_prefix, max_quantity=1000)
        try:
            await store.ping()
            await asyncio.to_thread(start.wait, 30)
            for _ in range(adds):
                await store.add("shared", "t:a", 1, "Apricot jam", PRICE)
        finally:
            await store.aclose()

    asyncio.run(run())


@pytest.mark.redis
@pytest.mark.parametrize("backend", REAL_REDIS)
async def test_two_processes_adding_lose_nothing(
    store: CartStore, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two worker processes each adding 1 a hundred times to one line on a real Redis end at exactly 200."""
    redis_url = real_redis_url(request, backend)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [
        context.Process(target=_add_in_process, args=(redis_url, store.key_prefix, 100, start)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0, 0]

    cart = await store.view("shared")
    assert quantities(cart) == {"t:a": 200}


# 13. One round trip per call


async def test_each_cart_call_sends_one_client_command(store: CartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen from the client, every cart call is one command: EVALSHA (scripts already loaded), also clear."""
    await store.clear("warm-up")
    await add(store, "t:a")
    await add(store, "t:b")
    await store.view(SESSION)
    await store.set_quantity(SESSION, "t:a", 2)  # all four scripts are loaded now

    sent: list[str] = []
    execute_command = store.client.execute_command

    async def recording_execute_command(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await execute_command(*args, **options)

    monkeypatch.setattr(store.client, "execute_command", recording_execute_command)
    observed: dict[str, list[str]] = {}
    for name, call in [
        ("add", lambda: add(store, "t:a")),
        ("view", lambda: store.view(SESSION)),
        ("set_quantity", lambda: store.set_quantity(SESSION, "t:a", 4)),
        ("remove", lambda: store.remove(SESSION, "t:b")),
        ("view_absent", lambda: store.view("absent")),
        ("clear", lambda: store.clear(SESSION)),
    ]:
        sent.clear()
        await call()
        observed[name] = list(sent)
    assert observed == {
        "add": ["EVALSHA"],
        "view": ["EVALSHA"],
        "set_quantity": ["EVALSHA"],
        "remove": ["EVALSHA"],
        "view_absent": ["EVALSHA"],
        "clear": ["EVALSHA"],
    }


def _commandstats(client: redis.Redis) -> dict[str, dict[str, Any]]:
    return {name: dict(stats) for name, stats in client.info("commandstats").items()}


@pytest.mark.redis
@pytest.mark.parametrize("backend", REAL_REDIS)
async def test_commandstats_show_one_script_call_per_cart_call(
    store: CartStore, backend: str, request: pytest.FixtureRequest
) -> None:
    """Each cart call sends one command, EVALSHA, with and without an idempotency key (clear too)."""
    if backend == "redis" and os.environ.get("WEFT_TEST_REDIS_URL"):
        pytest.skip("CONFIG RESETSTAT is server-wide; not run against a shared WEFT_TEST_REDIS_URL server")
    admin = redis.Redis.from_url(real_redis_url(request, backend))

    # Warm-up: load all four scripts, and leave two lines so the measured remove keeps the key.
    await store.clear("warm-up")
    await add(store, "t:a")
    await add(store, "t:b")
    await store.view(SESSION)
    await store.set_quantity(SESSION, "t:a", 2)

    calls: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
        ("add", "evalsha", lambda: add(store, "t:a")),
        ("view", "evalsha", lambda: store.view(SESSION)),
        ("set_quantity", "evalsha", lambda: store.set_quantity(SESSION, "t:a", 4)),
        ("remove", "evalsha", lambda: store.remove(SESSION, "t:b")),
        ("clear", "evalsha", lambda: store.clear(SESSION)),
        ("keyed add", "evalsha", lambda: store.add(SESSION, "t:a", 1, "A", PRICE, change=keyed("a"))),
        ("keyed add replayed", "evalsha", lambda: store.add(SESSION, "t:a", 1, "A", PRICE, change=keyed("a"))),
        ("keyed set_quantity", "evalsha", lambda: store.set_quantity(SESSION, "t:a", 3, change=keyed("s"))),
        ("keyed clear", "evalsha", lambda: store.clear(SESSION, change=keyed("c"))),
    ]
    try:
        observed: dict[str, dict[str, int]] = {}
        for name, command, call in calls:
            admin.config_resetstat()
            await call()
            stats = _commandstats(admin)
            stats.pop("cmdstat_config|resetstat", None)
            observed[name] = {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()}
            assert stats[f"cmdstat_{command}"]["calls"] == 1, (name, stats)
            assert "cmdstat_eval" not in stats and "cmdstat_script|load" not in stats, (name, stats)
        print("\ncommandstats per cart call (script calls include the commands run inside the script):")
        for name, figures in observed.items():
            print(f"  {name}: {figures}")
        assert await exists(store) == 0
    finally:
        admin.close()


# 14. Exact cart shape, damaged keys, one count per burst


async def test_counting_and_scanning_ignore_a_deployment_whose_prefix_extends_this_one(
    make_store: StoreFactory, key_prefix: str
) -> None:
    """Prefixes ``P`` and ``P:cart:eu`` on one Redis: each counts and scans only its own carts."""
    mine = make_store()
    theirs = make_store(key_prefix=f"{key_prefix}:cart:eu")
    for session in ("m1", "m2"):
        await add(mine, "t:a", session=session)
    for session in ("t1", "t2", "t3"):
        await add(theirs, "t:a", session=session)
    await mine.client.set(f"{key_prefix}:cart:loose", "x")  # under the prefix, not of the cart shape
    await mine.client.set(f"{key_prefix}:cart:{{m9}}:tail", "x")

    assert await mine.count_carts() == 2
    assert await theirs.count_carts() == 3
    assert sorted([key async for key in mine.scan_cart_keys()]) == [mine.cart_key("m1"), mine.cart_key("m2")]
    assert len([key async for key in theirs.scan_cart_keys()]) == 3


async def test_a_non_integer_stamp_does_not_break_reading_or_adding(store: CartStore) -> None:
    await add(store, "t:a", 2)
    await store.client.hset(store.cart_key(SESSION), LAST_ACCESSED_FIELD, "yesterday")
    cart = await store.view(SESSION)
    assert quantities(cart) == {"t:a": 2}
    assert quantities(await add(store, "t:a")) == {"t:a": 3}


async def test_a_cart_key_of_another_type_is_damaged_and_left_alone(store: CartStore) -> None:
    """A foreign string at a cart key: every script call says damaged (never "retry") and changes nothing."""
    key = store.cart_key(SESSION)
    await store.client.set(key, "foreign", ex=1000)
    for call in (
        lambda: store.view(SESSION),
        lambda: add(store, "t:a"),
        lambda: store.set_quantity(SESSION, "t:a", 2),
        lambda: store.remove(SESSION, "t:a"),
    ):
        with pytest.raises(CartStorageError) as raised:
            await call()
        assert raised.value.kind == "damaged" and not raised.value.maybe_applied
    assert await store.client.get(key) == "foreign"
    assert 0 < await store.client.ttl(key) <= 1000  # not even the TTL was touched


async def test_one_count_serves_a_burst_and_a_later_call_recounts(store: CartStore) -> None:
    """16 concurrent counts share one SCAN sweep; within the window the count is reused; after it, redone."""
    for session in ("c1", "c2", "c3"):
        await add(store, "t:a", session=session)
    scans = 0
    scan = store.client.scan

    async def counting_scan(*args: Any, **kwargs: Any) -> Any:
        nonlocal scans
        scans += 1
        await asyncio.sleep(0.01)  # let the other callers arrive while the sweep runs
        return await scan(*args, **kwargs)

    store.client.scan = counting_scan  # type: ignore[method-assign]
    now = [1000.0]
    store.cart_counter.clock = lambda: now[0]
    counts = await asyncio.gather(*(store.counted_carts() for _ in range(16)))
    assert {count.carts for count in counts} == {3} and scans == 1
    assert len({count.counted_at for count in counts}) == 1

    await add(store, "t:a", session="c4")
    now[0] += 2
    again = await store.counted_carts()
    assert again.carts == 3 and scans == 1 and again.age_seconds(now[0]) == pytest.approx(2)

    now[0] += store.cart_counter.max_age_seconds
    assert (await store.counted_carts()).carts == 4 and scans == 2


async def test_a_failed_count_is_not_kept(store: CartStore) -> None:
    await add(store, "t:a")
    scan = store.client.scan
    failures = [redis.exceptions.ResponseError("NOPERM this user has no permissions to run the 'scan' command")]

    async def failing_scan(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await scan(*args, **kwargs)

    store.client.scan = failing_scan  # type: ignore[method-assign]
    with pytest.raises(CartStorageError):
        await store.counted_carts()
    assert (await store.counted_carts()).carts == 1


# 15. The operator's reads and purges (``weft-mcp sessions``): every read leaves stamps and TTLs alone

NOW = 2_000_000_000
DAY = 86400


async def stamp(store: CartStore, session: str, when: int | str) -> None:
    await store.client.hset(store.cart_key(session), LAST_ACCESSED_FIELD, str(when))


async def plant_damage(store: CartStore) -> dict[str, str]:
    """Three damaged keys of the cart shape (a string, a list, a cart with an unreadable stamp) -> reasons."""
    await store.client.set(store.cart_key("str"), "not a cart")
    await store.client.rpush(store.cart_key("lst"), "a", "b")
    await add(store, "t:a", session="bad-stamp")
    await add(store, "t:b", session="bad-stamp")
    await stamp(store, "bad-stamp", "yesterday")
    return {
        store.cart_key("str"): "not a hash but a string",
        store.cart_key("lst"): "not a hash but a list",
        store.cart_key("bad-stamp"): "unreadable _last_accessed (not Unix seconds)",
    }


async def snapshot(store: CartStore) -> dict[str, Any]:
    """Every key under the store's prefix with its type, value and TTL: to prove a read changed nothing."""
    state: dict[str, Any] = {}
    async for key in store.client.scan_iter(match=f"{store.key_prefix}*"):
        kind = await store.client.type(key)
        value = await store.client.hgetall(key) if kind == "hash" else await store.client.dump(key)
        state[key] = (kind, value, await store.client.ttl(key))
    return state


async def test_session_key_of_inverts_cart_key(store: CartStore, key_prefix: str) -> None:
    for session in ("s1", "h-" + "0" * 32, "chat:with:colons", "ü"):
        assert store.session_key_of(store.cart_key(session)) == session
    for foreign in (f"{key_prefix}-other:cart:{{s1}}", f"{key_prefix}:cart:loose", f"{key_prefix}:cart:{{a}}:tail"):
        assert store.session_key_of(foreign) == foreign  # not of this store's cart shape: as it is


async def test_count_with_damage_counts_carts_and_names_damaged_keys(store: CartStore, key_prefix: str) -> None:
    for session in ("c1", "c2"):
        await add(store, "t:a", session=session)
    damaged = await plant_damage(store)
    other = CartStore(store.client, backend=store.backend, key_prefix=f"{key_prefix}:cart:eu")
    await other.client.set(other.cart_key("foreign"), "x")  # another deployment's damage is not ours
    before = await snapshot(store)
    seen: list[tuple[int, int | None]] = []

    report = await store.count_with_damage(lambda scanned, done: seen.append((scanned, done)))
    assert report.carts == 2
    assert report.damage.damaged == 3 and set(report.damage.damaged_keys) == set(damaged)
    assert report.damage.reasons == damaged
    assert seen == [(5, None)]  # one batch: every key of the cart shape was scanned
    assert await snapshot(store) == before


async def test_list_carts_gives_line_counts_and_idle_ages(store: CartStore) -> None:
    for lines, session in enumerate(("one", "two", "three"), start=1):
        for index in range(lines):
            await add(store, f"t:p{index}", session=session)
        await stamp(store, session, NOW - lines * DAY)
    await add(store, "t:a", session="no-stamp")
    await store.client.hdel(store.cart_key("no-stamp"), LAST_ACCESSED_FIELD)
    damaged = await plant_damage(store)
    before = await snapshot(store)

    listing = await store.list_carts(10, now=NOW)
    rows = {cart.session_key: (cart.key, cart.lines, cart.last_accessed, cart.idle_seconds) for cart in listing.carts}
    assert rows == {
        "one": (store.cart_key("one"), 1, NOW - DAY, DAY),
        "two": (store.cart_key("two"), 2, NOW - 2 * DAY, 2 * DAY),
        "three": (store.cart_key("three"), 3, NOW - 3 * DAY, 3 * DAY),
        "no-stamp": (store.cart_key("no-stamp"), 1, None, None),
    }
    assert listing.damage.reasons == damaged
    assert len((await store.list_carts(2, now=NOW)).carts) == 2
    earlier = await store.list_carts(10, now=NOW - 2 * DAY)  # a stamp up to a day "in the future": idle 0
    assert {cart.session_key: cart.idle_seconds for cart in earlier.carts}["one"] == 0
    assert await snapshot(store) == before


async def test_cart_detail_shows_ttl_stamp_lines_and_damage(make_store: StoreFactory) -> None:
    store = make_store(ttl_seconds=1000)
    await store.add("full", "t:b", 2, HEBREW_NAME, PRICE)
    await store.add("full", "t:a", 1, "Apricot jam", Decimal("10.5"))
    await store.client.hset(store.cart_key("full"), "t:z-broken", "not json")
    await stamp(store, "full", NOW - 90)
    before = await snapshot(store)

    detail = await store.cart_detail("full", now=NOW)
    assert (detail.session_key, detail.key, detail.exists) == ("full", store.cart_key("full"), True)
    assert 990 <= (detail.ttl_seconds or 0) <= 1000
    assert (detail.last_accessed, detail.idle_seconds, detail.damaged) == (NOW - 90, 90, "1 unreadable line(s)")
    assert detail.lines == [
        {"product_id": "t:a", "quantity": 1, "name": "Apricot jam", "price": "10.50"},
        {"product_id": "t:b", "quantity": 2, "name": HEBREW_NAME, "price": "24.40"},
        {"product_id": "t:z-broken", "raw": "not json", "damaged": True},
    ]
    assert await snapshot(store) == before  # no stamp, no TTL refresh

    absent = await store.cart_detail("nobody", now=NOW)
    assert (absent.exists, absent.ttl_seconds, absent.lines, absent.damaged) == (False, None, [], None)
    await plant_damage(store)
    text = await store.cart_detail("str", now=NOW)
    assert (text.exists, text.ttl_seconds, text.damaged, text.lines) == (True, None, "not a hash but a string", [])
    bad = await store.cart_detail("bad-stamp", now=NOW)
    assert bad.damaged == "unreadable _last_accessed (not Unix seconds)" and len(bad.lines) == 2
    assert (bad.last_accessed, bad.idle_seconds) == (None, None)


async def test_delete_cart_removes_one_cart_damaged_or_not(store: CartStore) -> None:
    await add(store, "t:a", session="keep")
    await add(store, "t:a", session="gone")
    await plant_damage(store)
    assert await store.delete_cart("gone") is True
    assert await store.delete_cart("gone") is False
    assert await store.delete_cart("str") is True and await store.delete_cart("bad-stamp") is True
    assert await store.delete_cart("nobody") is False
    assert await store.count_carts() == 2  # "keep" and the list, which nobody deleted
    assert quantities(await store.view("keep")) == {"t:a": 1}


async def test_purge_idle_deletes_only_carts_idle_past_the_age(store: CartStore) -> None:
    ages = {"old-1": 30 * DAY, "old-2": 8 * DAY, "edge": 7 * DAY, "fresh": DAY, "future": -DAY}
    for session, age in ages.items():
        await add(store, "t:a", session=session)
        await stamp(store, session, NOW - age)
    await add(store, "t:a", session="no-stamp")
    await store.client.hdel(store.cart_key("no-stamp"), LAST_ACCESSED_FIELD)
    damaged = await plant_damage(store)
    before = await snapshot(store)

    dry = await store.purge_idle(7 * DAY, dry_run=True, now=NOW)
    assert (dry.scanned, dry.idle, dry.deleted, dry.dry_run) == (9, 2, 0, True)
    assert dry.damage.reasons == damaged
    assert await snapshot(store) == before  # a dry run changes nothing

    seen: list[tuple[int, int | None]] = []
    report = await store.purge_idle(7 * DAY, now=NOW, on_batch=lambda scanned, done: seen.append((scanned, done)))
    assert (report.scanned, report.idle, report.deleted, report.dry_run) == (9, 2, 2, False)
    assert report.damage.reasons == damaged and seen == [(9, 2)]
    after = await snapshot(store)
    assert set(before) - set(after) == {store.cart_key("old-1"), store.cart_key("old-2")}
    assert all(after[key] == before[key] for key in after)  # survivors untouched, damaged keys included


async def test_purge_idle_keeps_a_cart_used_after_the_sweep_read_it(
    store: CartStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete re-checks the stamp inside Redis: a chat that came back between read and delete keeps its cart."""
    for session in ("comes-back", "stays-away"):
        await add(store, "t:a", session=session)
        await stamp(store, session, int(time.time()) - 30 * DAY)
    inspect = store._inspect

    async def inspect_then_use_the_cart(keys: list[str], now: int | None = None) -> Any:
        states = await inspect(keys, now)
        await store.view("comes-back")  # a real access stamps it now
        return states

    monkeypatch.setattr(store, "_inspect", inspect_then_use_the_cart)
    report = await store.purge_idle(7 * DAY, now=int(time.time()))
    assert (report.idle, report.deleted) == (2, 1)
    assert quantities(await store.view("comes-back")) == {"t:a": 1}
    assert await exists(store, "stays-away") == 0


async def test_purge_idle_across_scan_batches_survives_lost_scripts(
    store: CartStore, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More carts than one SCAN batch, and the server forgets its scripts mid-sweep (restart, failover,
    SCRIPT FLUSH): the NOSCRIPT replies reload the script and resend, and every idle cart goes."""
    if backend == "redis" and os.environ.get("WEFT_TEST_REDIS_URL"):
        pytest.skip("SCRIPT FLUSH is server-wide; not run against a shared WEFT_TEST_REDIS_URL server")
    total = SCAN_COUNT + 200
    line = {"t:a": '{"q":1,"n":"x","p":"1.00"}', LAST_ACCESSED_FIELD: str(NOW - 30 * DAY)}
    async with store.client.pipeline(transaction=False) as pipe:
        for i in range(total):
            pipe.hset(store.cart_key(f"bulk-{i}"), mapping=line)
        await pipe.execute()
    inspect = store._inspect

    async def inspect_then_forget_scripts(keys: list[str], now: int | None = None) -> Any:
        states = await inspect(keys, now)
        await store.client.script_flush()  # the purge of this batch and the next batch's read meet NOSCRIPT
        return states

    monkeypatch.setattr(store, "_inspect", inspect_then_forget_scripts)
    seen: list[tuple[int, int | None]] = []
    report = await store.purge_idle(7 * DAY, now=NOW, on_batch=lambda scanned, done: seen.append((scanned, done)))
    assert (report.scanned, report.idle, report.deleted) == (total, total, total)
    assert len(seen) >= 2 and seen[-1] == (total, total)
    assert await store.count_carts() == 0


@pytest.mark.redis
@pytest.mark.parametrize("backend", REAL_REDIS)
async def test_sweeps_call_their_scripts_by_sha(store: CartStore, backend: str, request: pytest.FixtureRequest) -> None:
    """Counting, listing and purging send EVALSHA (the scripts are class constants loaded once), never EVAL."""
    if backend == "redis" and os.environ.get("WEFT_TEST_REDIS_URL"):
        pytest.skip("CONFIG RESETSTAT is server-wide; not run against a shared WEFT_TEST_REDIS_URL server")
    for session in ("s1", "s2", "s3"):
        await add(store, "t:a", session=session)
        await stamp(store, session, NOW - 30 * DAY)
    admin = redis.Redis.from_url(real_redis_url(request, backend))
    try:
        admin.config_resetstat()
        await store.count_with_damage()
        await store.list_carts(10)
        assert (await store.purge_idle(7 * DAY, now=NOW)).deleted == 3
        stats = _commandstats(admin)
        assert "cmdstat_eval" not in stats, stats
        assert int(stats["cmdstat_evalsha"]["calls"]) == 3 + 3 + 3 + 3  # count, list, purge's read, purge's delete
    finally:
        admin.close()


BAD_STAMPS = ["99999999999999999999999999", "9223372036854775807", str(NOW + 2 * DAY), "0", "-5", "1e9", " 12", ""]


async def test_sweeps_report_carts_with_unreadable_lines_or_stamps_as_damaged(store: CartStore) -> None:
    """A cart key with one garbage line, or a stamp out of range, is damaged in count, list, purge-idle and show:
    never counted or listed as a cart, never deleted by age, each line of ``show`` marked."""
    await add(store, "t:ok", session="fine")
    await stamp(store, "fine", NOW - 30 * DAY)
    expected: dict[str, str] = {}
    for field, value in GARBAGE_LINES.items():
        session = f"line-{len(expected)}"
        await add(store, "t:ok", session=session)
        await store.client.hset(store.cart_key(session), field, value)
        await stamp(store, session, NOW - 30 * DAY)
        expected[store.cart_key(session)] = "1 unreadable line(s)"
    for when in BAD_STAMPS:
        session = f"stamp-{len(expected)}"
        await add(store, "t:ok", session=session)
        await stamp(store, session, when)
        expected[store.cart_key(session)] = "unreadable _last_accessed (not Unix seconds)"
    before = await snapshot(store)

    counted = await store.count_with_damage(now=NOW)
    assert (counted.carts, counted.damage.reasons) == (1, expected)
    listing = await store.list_carts(100, now=NOW)
    assert [cart.session_key for cart in listing.carts] == ["fine"] and listing.damage.reasons == expected
    dry = await store.purge_idle(7 * DAY, dry_run=True, now=NOW)
    assert (dry.idle, dry.damage.reasons) == (1, expected)
    report = await store.purge_idle(7 * DAY, now=NOW)
    assert (report.deleted, report.damage.reasons) == (1, expected)
    after = await snapshot(store)
    assert set(before) - set(after) == {store.cart_key("fine")}  # damaged keys are never deleted by age

    detail = await store.cart_detail("line-0", now=NOW)
    assert detail.damaged == "1 unreadable line(s)"
    assert [line.get("damaged", False) for line in detail.lines] == [True, False]
    stamped = await store.cart_detail(f"stamp-{len(GARBAGE_LINES)}", now=NOW)
    assert (stamped.damaged, stamped.last_accessed, stamped.idle_seconds) == (
        "unreadable _last_accessed (not Unix seconds)",
        None,
        None,
    )
    for key in expected:
        assert await store.delete_cart(store.session_key_of(key)) is True
    assert await store.count_carts() == 0


async def test_a_stamp_within_a_day_ahead_is_clock_skew_not_damage(store: CartStore) -> None:
    await add(store, "t:a", session="ahead")
    await stamp(store, "ahead", NOW + DAY)
    listing = await store.list_carts(10, now=NOW)
    assert [(cart.session_key, cart.idle_seconds) for cart in listing.carts] == [("ahead", 0)]
    assert listing.damage.damaged == 0


# 15. Idempotent retries and the generated secret


def keyed(label: str, fingerprint: str = "f" * 32) -> Any:
    from service.idempotency import IdempotentChange

    return IdempotentChange(digest=label.encode().hex().ljust(32, "0")[:32], fingerprint=fingerprint)


async def test_an_idempotent_add_retried_adds_once_and_answers_replayed(store: CartStore) -> None:
    change = keyed("k1")
    first = await store.add(SESSION, "t:a", 2, "A", PRICE, change=change)
    assert quantities(first) == {"t:a": 2} and not first.replayed
    again = await store.add(SESSION, "t:a", 2, "A", PRICE, change=change)
    assert quantities(again) == {"t:a": 2} and again.replayed
    record = store.idempotency_record_key(SESSION, change.digest)
    assert await store.client.get(record) == change.fingerprint
    assert 0 < await store.client.ttl(record) <= store.idempotency_ttl_seconds
    assert quantities(await store.add(SESSION, "t:a", 2, "A", PRICE)) == {"t:a": 4}  # no key: adds


async def test_a_reused_key_for_another_change_is_refused_and_changes_nothing(store: CartStore) -> None:
    await store.add(SESSION, "t:a", 1, "A", PRICE, change=keyed("k1", "1" * 32))
    before = await raw(store)
    for call in (
        lambda: store.add(SESSION, "t:a", 3, "A", PRICE, change=keyed("k1", "2" * 32)),
        lambda: store.set_quantity(SESSION, "t:a", 4, change=keyed("k1", "3" * 32)),
        lambda: store.remove(SESSION, "t:a", change=keyed("k1", "4" * 32)),
        lambda: store.clear(SESSION, change=keyed("k1", "5" * 32)),
    ):
        with pytest.raises(CartRejected) as caught:
            await call()
        assert caught.value.reason == "idempotency_conflict"
    assert await raw(store) == before


async def test_a_rejected_change_records_nothing(store: CartStore) -> None:
    change = keyed("k2")
    with pytest.raises(CartRejected):
        await store.add(SESSION, "t:a", 6, "A", PRICE, change=change)  # over max_quantity 5
    assert await store.client.exists(store.idempotency_record_key(SESSION, change.digest)) == 0
    assert quantities(await store.add(SESSION, "t:a", 2, "A", PRICE, change=change)) == {"t:a": 2}
    with pytest.raises(CartRejected):
        await store.set_quantity(SESSION, "t:zz", 1, change=keyed("k3"))
    assert await store.client.exists(store.idempotency_record_key(SESSION, keyed("k3").digest)) == 0


async def test_keyed_update_remove_and_clear_replay(store: CartStore) -> None:
    await add(store, "t:a", 1)
    await add(store, "t:b", 1)
    assert quantities(await store.set_quantity(SESSION, "t:a", 3, change=keyed("u"))) == {"t:a": 3, "t:b": 1}
    await store.set_quantity(SESSION, "t:a", 1)
    replay = await store.set_quantity(SESSION, "t:a", 3, change=keyed("u"))
    assert replay.replayed and quantities(replay) == {"t:a": 1, "t:b": 1}  # the cart as it is now
    assert quantities(await store.remove(SESSION, "t:b", change=keyed("r"))) == {"t:a": 1}
    assert (await store.remove(SESSION, "t:b", change=keyed("r"))).replayed  # not "not in the cart"
    assert (await store.clear(SESSION, change=keyed("c"))).is_empty
    await add(store, "t:c", 1)
    replay = await store.clear(SESSION, change=keyed("c"))
    assert replay.replayed and quantities(replay) == {"t:c": 1}  # the retry of that clear clears nothing new


async def test_records_live_in_the_carts_slot_and_never_count_as_carts(store: CartStore, key_prefix: str) -> None:
    change = keyed("slot")
    await store.add("c-" + "ab" * 16, "t:a", 1, "A", PRICE, change=change)
    record = store.idempotency_record_key("c-" + "ab" * 16, change.digest)
    assert record == f"{key_prefix}:idem:{{c-{'ab' * 16}}}:{change.digest}"
    assert not store.is_cart_key(record)
    assert await store.shared_secret() == await store.shared_secret()
    assert await store.count_carts() == 1
    assert [c.session_key for c in (await store.list_carts(10)).carts] == ["c-" + "ab" * 16]
    assert (await store.count_with_damage()).carts == 1


async def test_shared_secret_is_generated_once_for_every_store_on_it(make_store: StoreFactory) -> None:
    first = make_store()
    secret = await first.shared_secret()
    assert len(secret) >= 32 and await first.client.get(first.secret_key) == secret
    assert await first.client.ttl(first.secret_key) == -1  # kept: cart_ids must keep opening
    if first.backend == "redis":  # a second worker on the same Redis reads the same secret
        assert await make_store().shared_secret() == secret


async def test_each_keyed_call_sends_one_command(store: CartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an idempotency key, add, set_quantity, remove and clear are still one EVALSHA each."""
    await store.clear("warm-up", change=keyed("w0"))
    await add(store, "t:a")
    await store.set_quantity(SESSION, "t:a", 2)
    sent: list[str] = []
    execute_command = store.client.execute_command

    async def recording_execute_command(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await execute_command(*args, **options)

    monkeypatch.setattr(store.client, "execute_command", recording_execute_command)
    for call in (
        lambda: store.add(SESSION, "t:b", 1, "B", PRICE, change=keyed("a1")),
        lambda: store.add(SESSION, "t:b", 1, "B", PRICE, change=keyed("a1")),  # the replay
        lambda: store.set_quantity(SESSION, "t:a", 3, change=keyed("s1")),
        lambda: store.remove(SESSION, "t:a", change=keyed("r1")),
        lambda: store.clear(SESSION, change=keyed("c1")),
    ):
        sent.clear()
        await call()
        assert sent == ["EVALSHA"]
