"""``CartTransfers`` (``store.transfers``): share codes and claims, on every backend.

Backends: ``embedded`` (fakeredis), ``redis`` (a private redis-server from the session fixture),
``containers`` (the session's testcontainers Redis) and ``cluster`` (3 primaries), where the source and target
carts of every claim sit on different primaries. Each test has a key prefix of its own and deletes its keys
afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
import redis.asyncio as redis_async
from redis.asyncio.connection import Connection as RedisConnection

from service.cart_transfers import (
    CLAIM_MARKER_TTL_SECONDS,
    CartTransfers,
    ClaimConflict,
    Claimed,
    EmptyCartError,
    SelfClaimError,
    TransferCodeError,
    claim_id_for,
    new_claim_id,
)
from service.carts import CartStorageError, CartStore
from service.claim_limits import ClaimLimits, ClaimRateLimited
from service.cli import main
from service.redis_clients import TEXT_REPLIES
from service.storage_faults import Fault
from service.transfer_codes import CodeShapeError, normalize
from tests.redis_backends import REAL_REDIS, REAL_REDIS_NAMES, real_redis_url
from tests.transfer_support import (
    CALLER,
    CATALOG,
    SECRET,
    apart,
    catalog,
    connect,
    drop_keys,
    dump,
    every_key,
    fill,
    held,
    in_outbox,
    primary_of,
)

Factory = Callable[..., CartStore]


@pytest.fixture(
    params=[
        "embedded",
        *REAL_REDIS,
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def make_store(request: pytest.FixtureRequest, backend: str, key_prefix: str) -> AsyncIterator[Factory]:
    """Stores on the backend, all on the same data (two stores = two workers); cleaned up afterwards."""
    where: dict[str, Any] = {"server": fakeredis.FakeServer()}
    if backend in REAL_REDIS_NAMES:
        where = {"redis_url": real_redis_url(request, backend)}
    elif backend == "cluster":
        where = {"cluster": request.getfixturevalue("redis_cluster")}
    stores: list[CartStore] = []

    def factory(**options: Any) -> CartStore:
        store = connect(backend, key_prefix, **where, **options)
        stores.append(store)
        return store

    yield factory
    try:
        if stores:
            await drop_keys(stores[0])
    finally:
        for store in stores:
            await store.aclose()


@pytest_asyncio.fixture
async def store(make_store: Factory) -> CartStore:
    return make_store()


async def claim(store: CartStore, target: str, **options: Any) -> Claimed:
    options.setdefault("claim_id", new_claim_id())
    options.setdefault("refresh", catalog())
    options.setdefault("caller", CALLER)
    options.setdefault("mode", "merge")
    return await store.transfers.claim(target, secret=SECRET, **options)


def lines_of(claimed: Claimed) -> dict[str, int]:
    return {line.product_id: line.quantity for line in claimed.cart.lines}


# ---------------------------------------------------------------- share


async def test_share_answers_a_code_and_keeps_only_its_keyed_hash(store: CartStore) -> None:
    source, _ = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 2, "t:b": 1})
    before = time.time()
    shared = await store.transfers.share(source, SECRET)

    assert len(shared.code) == 9 and shared.code[4] == "-" and normalize(shared.code) == shared.code.replace("-", "")
    assert shared.expires_at.tzinfo is UTC
    assert before + 599 <= shared.expires_at.timestamp() <= time.time() + 601
    assert {line.product_id: line.quantity for line in shared.cart.lines} == {"t:a": 2, "t:b": 1}

    keys = await every_key(store)
    hashed = keys[store.transfers.share_key(source)]
    assert set(keys) == {store.cart_key(source), store.transfers.share_key(source), store.transfers.code_key(hashed)}
    assert keys[store.transfers.code_key(hashed)] == source
    for key in (store.transfers.share_key(source), store.transfers.code_key(hashed)):
        assert 590 <= await store.client.ttl(key) <= 600
    # Never in clear: not the code as shown, nor as typed, in any key name or value.
    text = dump(keys)
    for form in (shared.code, normalize(shared.code), shared.code.lower(), normalize(shared.code).lower()):
        assert form not in text


async def test_an_empty_cart_cannot_be_shared_and_nothing_is_written(store: CartStore) -> None:
    with pytest.raises(EmptyCartError) as refused:
        await store.transfers.share("nobody", SECRET)
    assert str(refused.value) == "An empty cart cannot be shared; add products to it first."
    assert await every_key(store) == {}


async def test_sharing_again_replaces_the_code(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    first = await store.transfers.share(source, SECRET)
    first_hash = await store.client.get(store.transfers.share_key(source))
    second = await store.transfers.share(source, SECRET)
    assert first.code != second.code
    assert not await store.client.exists(store.transfers.code_key(first_hash))

    with pytest.raises(TransferCodeError):
        await claim(store, target, code=first.code)
    assert await held(store, source) == {"t:a": 1} and await held(store, target) == {}
    claimed = await claim(store, target, code=second.code)
    assert lines_of(claimed) == {"t:a": 1}


# ---------------------------------------------------------------- claims


async def test_claim_by_code_merges_caps_refreshes_and_empties_the_source(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 4, "t:b": 2})
    await fill(store, target, {"t:a": 3, "t:c": 1})
    shared = await store.transfers.share(source, SECRET)

    claimed = await claim(store, target, code=shared.code.lower().replace("-", " "))
    assert lines_of(claimed) == {"t:a": 5, "t:b": 2, "t:c": 1}  # 4 + 3 stops at 5
    assert (claimed.lines, claimed.capped, claimed.skipped, claimed.replayed) == (2, ("t:a",), (), False)
    fresh = {line.product_id: (line.name, line.price) for line in claimed.cart.lines}
    assert fresh["t:a"] == CATALOG["t:a"] and fresh["t:b"] == CATALOG["t:b"]  # claimed lines refreshed
    assert fresh["t:c"] == ("Old t:c", Decimal("1.00"))  # the target's own line is left as it was

    assert await held(store, target) == {"t:a": 5, "t:b": 2, "t:c": 1}
    keys = await every_key(store)
    marker = store.transfers.marker_key(target, claimed_id := _marker_id(keys, store, target))
    took = store.transfers.took_key(source, claimed_id)
    assert set(keys) == {store.cart_key(target), marker, took}  # source, share, code and outbox all gone
    assert json.loads(keys[marker]) == {"lines": 2, "capped": ["t:a"], "skipped": [], "f": "", "src": source}
    assert keys[took] == target  # the source's record that this claim took its lines (no lines, no ids)
    for key in (marker, took):
        assert CLAIM_MARKER_TTL_SECONDS - 10 <= await store.client.ttl(key) <= CLAIM_MARKER_TTL_SECONDS
    assert len(claimed_id) == 32


def _marker_id(keys: dict[str, Any], store: CartStore, target: str) -> str:
    head = f"{store.key_prefix}:idem:{{{target}}}:claim-"
    (marker,) = [key for key in keys if key.startswith(head)]
    return marker[len(head) :]


async def test_claim_replace_drops_the_targets_own_lines(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 2})
    await fill(store, target, {"t:a": 3, "t:c": 1})
    claimed = await claim(store, target, source_key=source, mode="replace")
    assert lines_of(claimed) == {"t:a": 2} and claimed.capped == ()
    assert await held(store, source) == {}


async def test_skipped_lines_gone_from_the_catalog_past_the_line_limit_or_unreadable(make_store: Factory) -> None:
    store = make_store()
    source, target = await apart(store, "src", "dst")
    await fill(
        make_store(max_lines=10), source, {"t:a": 1, "t:b": 1, "t:d": 2, "t:e": 1}
    )  # filled under a higher limit
    await store.client.hset(store.cart_key(source), "t:c", '{"q":"two"}')  # damaged
    await store.client.hset(store.cart_key(source), "no id", '{"q":1,"n":"x","p":"1.00"}')  # damaged, no product id
    await fill(store, target, {"t:a": 1, "t:c": 1})
    claimed = await claim(
        store, target, code=(await store.transfers.share(source, SECRET)).code, refresh=catalog({"t:b"})
    )
    # t:a merges; t:b gone; t:c unreadable; t:d takes the third and last line; t:e is past the limit of 3.
    assert lines_of(claimed) == {"t:a": 2, "t:c": 1, "t:d": 2}
    assert claimed.lines == 2 and claimed.capped == ()
    assert sorted(claimed.skipped) == ["t:b", "t:c", "t:e"]
    assert await held(store, source) == {} and await in_outbox(store, source) == {}
    assert not await store.client.exists(store.cart_key(source), store.transfers.outbox_key(source))


async def test_a_cart_cannot_claim_itself(store: CartStore) -> None:
    await fill(store, "mine", {"t:a": 1})
    shared = await store.transfers.share("mine", SECRET)
    before = await every_key(store)
    for options in ({"code": shared.code}, {"source_key": "mine"}):
        with pytest.raises(SelfClaimError) as refused:
            await claim(store, "mine", **options)
        assert str(refused.value) == "A cart cannot claim itself; use the code or cart_id of another chat's cart."
    after = await every_key(store)
    after.pop(store.cart_key("mine"))  # the share touched it; nothing else may differ
    before.pop(store.cart_key("mine"))
    assert after == before  # no failure counted, the code still live
    assert await held(store, "mine") == {"t:a": 1}
    claimed = await claim(store, "other", code=shared.code)
    assert lines_of(claimed) == {"t:a": 1}


async def test_a_code_claims_once_and_a_wrong_code_is_counted(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    shared = await store.transfers.share(source, SECRET)
    await claim(store, target, code=shared.code)
    await fill(store, source, {"t:b": 1})  # the source chat goes on; the used code does not reach it
    limits = store.transfers.limits
    for code in (shared.code, "BBBB-BBBB"):
        with pytest.raises(TransferCodeError) as refused:
            await claim(store, "third", code=code)
        assert str(refused.value) == "That transfer code is wrong, used or expired; ask for a new one with share_cart."
    assert await store.client.get(limits.caller_key(CALLER)) == "2"
    assert await store.client.get(limits.total_key) == "2"
    assert 3590 <= await store.client.ttl(limits.caller_key(CALLER)) <= 3600
    assert await held(store, source) == {"t:b": 1} and await held(store, "third") == {}


async def test_a_code_of_the_wrong_shape_touches_nothing(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    await store.transfers.share(source, SECRET)
    before = await every_key(store)
    for code in ("BCDA-EFGH", "123", "", "BCDF-GHJK-L"):
        with pytest.raises(CodeShapeError):
            await claim(store, target, code=code)
    assert await every_key(store) == before  # not counted as a failure either


async def test_an_expired_code_fails_like_a_wrong_one(make_store: Factory) -> None:
    store = make_store(transfer_code_ttl_seconds=1)
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    shared = await store.transfers.share(source, SECRET)
    assert await store.client.ttl(store.transfers.share_key(source)) == 1
    await asyncio.sleep(2.1)
    with pytest.raises(TransferCodeError):
        await claim(store, target, code=shared.code)
    assert await held(store, source) == {"t:a": 1}


async def test_claim_by_source_key_kills_the_sources_code(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    shared = await store.transfers.share(source, SECRET)
    assert lines_of(await claim(store, target, source_key=source)) == {"t:a": 1}
    await fill(store, source, {"t:b": 1})
    with pytest.raises(TransferCodeError):
        await claim(store, "third", code=shared.code)


async def test_claiming_an_empty_source_moves_nothing(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, target, {"t:a": 1})
    claimed = await claim(store, target, source_key=source)
    assert (lines_of(claimed), claimed.lines, claimed.skipped) == ({"t:a": 1}, 0, ())
    assert not await store.client.exists(store.cart_key(source))


async def test_the_same_claim_again_is_replayed_and_applies_once(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 2})
    shared = await store.transfers.share(source, SECRET)
    claim_id = claim_id_for("retry-key-1")
    first = await claim(store, target, code=shared.code, claim_id=claim_id, fingerprint="f" * 32)
    await fill(store, source, {"t:b": 1})  # even with new lines in the source, a replay moves nothing
    for _ in range(2):
        again = await claim(store, target, code=shared.code, claim_id=claim_id, fingerprint="f" * 32)
        assert again.replayed and (again.lines, again.capped, again.skipped) == (first.lines, (), ())
        assert lines_of(again) == {"t:a": 2}
    assert await held(store, source) == {"t:b": 1}
    assert await store.client.get(store.transfers.limits.total_key) is None  # a replay is no failed claim
    with pytest.raises(ClaimConflict):
        await claim(store, target, code=shared.code, claim_id=claim_id, fingerprint="e" * 32)


async def test_source_and_target_sit_on_different_primaries_on_a_cluster(store: CartStore) -> None:
    if store.backend != "redis-cluster":
        pytest.skip("only a cluster has primaries to tell apart")
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    shared = await store.transfers.share(source, SECRET)
    hashed = await store.client.get(store.transfers.share_key(source))
    source_node = await primary_of(store, store.cart_key(source))
    assert await primary_of(store, store.cart_key(target)) != source_node
    assert await primary_of(store, store.transfers.outbox_key(source)) == source_node  # one slot per cart
    assert await primary_of(store, store.transfers.share_key(source)) == source_node
    print(
        f"\nsource on {source_node}, target on {await primary_of(store, store.cart_key(target))}, "
        f"code mapping on {await primary_of(store, store.transfers.code_key(hashed))}"
    )
    claimed = await claim(store, target, code=shared.code)
    assert lines_of(claimed) == {"t:a": 1}


# ---------------------------------------------------------------- limits


async def test_failed_claims_are_limited_per_caller_across_workers(make_store: Factory) -> None:
    limits = {"claim_limits": None}
    first = make_store(**limits)
    first.transfers.limits = ClaimLimits(first.key_prefix, per_caller=3, total=100, window_seconds=2)
    second = make_store()
    second.transfers.limits = first.transfers.limits
    source, target = await apart(first, "src", "dst")
    await fill(first, source, {"t:a": 1})
    shared = await first.transfers.share(source, SECRET)
    for worker in (first, second, first):  # three failures, counted in Redis whichever worker saw them
        with pytest.raises(TransferCodeError):
            await claim(worker, target, code="BBBB-BBBB")
    before = await every_key(first)
    for worker in (second, first):  # refused even with the right code, and the refusal writes nothing
        with pytest.raises(ClaimRateLimited) as refused:
            await claim(worker, target, code=shared.code)
        assert str(refused.value) == "Too many failed transfer-code claims; try again in 1 minute."
    assert await every_key(first) == before
    assert lines_of(await claim(second, target, code=shared.code, caller="198.51.100.1")) == {"t:a": 1}  # others pass

    await asyncio.sleep(2.1)  # the window ends: the caller may try again
    await fill(first, source, {"t:b": 1})
    shared = await second.transfers.share(source, SECRET)
    assert lines_of(await claim(first, target, code=shared.code)) == {"t:a": 1, "t:b": 1}


async def test_failed_claims_are_limited_across_the_deployment(make_store: Factory) -> None:
    first, second = make_store(), make_store()
    for worker in (first, second):
        worker.transfers.limits = ClaimLimits(first.key_prefix, per_caller=100, total=4, window_seconds=3600)
    for index in range(4):  # four callers, one failure each, across two workers
        with pytest.raises(TransferCodeError):
            await claim((first, second)[index % 2], "dst", code="BBBB-BBBB", caller=f"10.0.0.{index}")
    await fill(first, "src", {"t:a": 1})
    shared = await first.transfers.share("src", SECRET)
    with pytest.raises(ClaimRateLimited) as refused:
        await claim(second, "dst", code=shared.code, caller="10.9.9.9")
    assert str(refused.value) == "Too many failed transfer-code claims; try again in 60 minutes."
    # Claims by cart key are not code guesses: never limited.
    assert lines_of(await claim(second, "dst", source_key="src")) == {"t:a": 1}


# ---------------------------------------------------------------- operators never see transfer keys as carts


async def test_operator_sweeps_see_only_carts(store: CartStore) -> None:
    """count / list / purge-idle (``weft-mcp sessions``) see carts only: never codes, outboxes, markers,
    counters or the sweep lease, which all exist here at once."""
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 1})
    await fill(store, target, {"t:b": 1})
    await fill(store, "stalled", {"t:c": 1})
    await store.transfers.share(source, SECRET)
    await claim(store, "x", source_key="y")  # a marker for x
    await store.transfers.take("stalled", "x", new_claim_id(), "merge", "", "")  # an outbox left by a crash
    with pytest.raises(TransferCodeError):
        await claim(store, "z", code="BBBB-BBBB")  # failure counters
    await store.transfers.sweep(refresh=catalog(), holder="w1")  # the lease (the outbox is too young)

    keys = await every_key(store)
    prefix = store.key_prefix
    for name in (
        "share:{",
        "code:{",
        "xfer:{",
        "idem:{",
        "claim-failures:{caller-",
        "claim-failures:{all}",
        "xfer-sweep",
    ):
        assert any(key.startswith(f"{prefix}:{name}") for key in keys), name
    carts = {store.cart_key(source), store.cart_key(target)}
    assert {key for key in keys if store.is_cart_key(key)} == carts
    assert {key async for key in store.scan_cart_keys()} == carts
    assert await store.count_carts() == 2
    counted = await store.count_with_damage()
    assert (counted.carts, counted.damage.damaged) == (2, 0)
    listing = await store.list_carts(100)
    assert {cart.key for cart in listing.carts} == carts
    purged = await store.purge_idle(1, now=int(time.time()) + 10)
    assert purged.deleted == 2 and purged.scanned == 2
    left = await every_key(store)
    assert not any(store.is_cart_key(key) for key in left)
    assert set(left) == set(keys) - carts  # every transfer key is still there, untouched


# ---------------------------------------------------------------- the sweep


async def test_finish_stalled_finishes_old_outboxes_and_leaves_young_and_damaged_ones(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    await fill(store, source, {"t:a": 2})
    await fill(store, "young", {"t:b": 1})
    claim_id = new_claim_id()
    assert (await store.transfers.take(source, target, claim_id, "merge", "", ""))[0] == "taken"
    assert (await store.transfers.take("young", target, new_claim_id(), "merge", "", ""))[0] == "taken"
    await store.client.hset(store.transfers.outbox_key(source), "_at", str(int(time.time()) - 120))
    damaged = store.transfers.outbox_key("broken")
    await store.client.hset(damaged, mapping={"t:c": '{"q":1,"n":"x","p":"1.00"}', "_to": target})

    report = await store.transfers.finish_stalled(30, refresh=catalog())
    assert (report.scanned, report.finished, report.damaged) == (3, 1, [damaged])
    assert await held(store, target) == {"t:a": 2}
    assert not await store.client.exists(store.transfers.outbox_key(source))
    assert await in_outbox(store, "young") == {"t:b": 1}
    assert await store.client.exists(damaged)
    assert await store.client.exists(store.transfers.marker_key(target, claim_id))


async def test_one_worker_a_minute_sweeps(make_store: Factory) -> None:
    first, second = make_store(), make_store()
    assert await first.transfers.sweep(refresh=catalog(), holder="w1") is not None
    assert await second.transfers.sweep(refresh=catalog(), holder="w2") is None
    assert await first.transfers.sweep(refresh=catalog(), holder="w1") is None
    lease = first.transfers.sweep_lease_key
    assert await first.client.get(lease) == "w1" and 55 <= await first.client.ttl(lease) <= 60


@pytest.mark.redis
def test_weft_mcp_sessions_never_shows_transfer_keys(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's commands themselves: count, list, purge and purge-idle with every transfer key present."""
    for name, value in {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": key_prefix}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir("/")
    store_keys: dict[str, Any] = {}

    async def prepare() -> None:
        store = connect("redis", key_prefix, redis_url=redis_url)
        try:
            await fill(store, "src", {"t:a": 1})
            await fill(store, "stalled", {"t:b": 1})
            await store.transfers.share("src", SECRET)
            await claim(store, "x", source_key="gone")
            await store.transfers.take("stalled", "x", new_claim_id(), "merge", "", "")
            with pytest.raises(TransferCodeError):
                await claim(store, "z", code="BBBB-BBBB")
            await store.transfers.sweep(refresh=catalog(), holder="w1")
            store_keys.update(await every_key(store))
        finally:
            await store.aclose()

    asyncio.run(prepare())
    transfer_keys = {key for key in store_keys if not key.startswith(f"{key_prefix}:cart:")}
    # share, code, outbox, claim marker, 2 took markers, 2 counters, lease
    assert len(transfer_keys) == 9, sorted(transfer_keys)

    def run(*args: str) -> Any:
        assert main(["sessions", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("count") == {"carts": 1, "damaged": 0, "damaged_keys": []}
    assert [row["session_key"] for row in run("list", "--limit", "100")] == ["src"]
    assert main(["sessions", "purge", "stalled", "--yes"]) == 1  # its lines are in the outbox: no cart
    capsys.readouterr()
    purged = run("purge-idle", "--older-than", "1s", "--dry-run")
    assert (purged["scanned"], purged["idle"]) == (1, 0)
    leftover = asyncio.run(_keys_left(redis_url, key_prefix))
    assert transfer_keys <= leftover


async def _keys_left(redis_url: str, key_prefix: str) -> set[str]:
    store = connect("redis", key_prefix, redis_url=redis_url)
    try:
        return set(await every_key(store))
    finally:
        await drop_keys(store)
        await store.aclose()


class RacedBeforeTake(CartTransfers):
    """Before its TAKE, another worker runs the whole claim (same id) and the source chat adds a line: the
    window between this claim's replay check (step 0) and its TAKE, opened wide."""

    rival: CartStore

    async def take(self, source_key: str, target_key: str, claim_id: str, *args: Any) -> tuple[str, list[str], str]:
        if not getattr(self, "raced", False):
            self.raced = True
            await claim(self.rival, target_key, source_key=source_key, claim_id=claim_id)
            await fill(self.rival, source_key, {"t:d": 2})
        return await super().take(source_key, target_key, claim_id, *args)


async def test_a_racer_of_a_finished_claim_never_takes_the_sources_new_lines(make_store: Factory) -> None:
    """Same claim id, by cart key: the racer that reaches TAKE after the claim finished must not move lines added
    since under that id (APPLY would call them replayed and FINISH would drop them): it answers the claim."""
    racer, rival = make_store(), make_store()
    source, target = await apart(racer, "src", "dst")
    await fill(racer, source, {"t:a": 1})
    racing = RacedBeforeTake(racer)
    racing.rival = rival
    racer.transfers = racing
    claimed = await claim(racer, target, source_key=source, claim_id=claim_id_for("one-claim"))
    assert claimed.replayed and lines_of(claimed) == {"t:a": 1}
    assert await held(racer, source) == {"t:d": 2}  # still in the source chat's cart
    assert not await racer.client.exists(racer.transfers.outbox_key(source))


async def test_a_damaged_outbox_stops_claims_of_that_cart_and_keeps_its_lines(store: CartStore) -> None:
    source, target = await apart(store, "src", "dst")
    outbox = store.transfers.outbox_key(source)
    await store.client.hset(outbox, mapping={"t:a": '{"q":1,"n":"x","p":"1.00"}', "_to": target})  # no _id
    await fill(store, source, {"t:b": 1})
    with pytest.raises(CartStorageError) as failed:
        await claim(store, target, source_key=source)
    assert failed.value.kind == Fault.DAMAGED and not failed.value.maybe_applied
    assert await held(store, source) == {"t:b": 1} and await held(store, target) == {}
    assert await store.client.hgetall(outbox) == {"t:a": '{"q":1,"n":"x","p":"1.00"}', "_to": target}


async def test_the_sweep_goes_on_past_an_outbox_it_cannot_finish(store: CartStore) -> None:
    """A stalled claim into a damaged target (not a hash) fails; the sweep finishes the others and reports it."""
    await fill(store, "src-1", {"t:a": 1})
    await fill(store, "src-2", {"t:b": 1})
    await store.client.set(store.cart_key("broken"), "not a cart")
    for source, target in (("src-1", "broken"), ("src-2", "fine")):
        await store.transfers.take(source, target, new_claim_id(), "merge", "", "")
    report = await store.transfers.finish_stalled(0, refresh=catalog(), now=int(time.time()) + 1)
    assert (report.scanned, report.finished, report.failed) == (2, 1, 1)
    assert await held(store, "fine") == {"t:b": 1}
    assert await in_outbox(store, "src-1") == {"t:a": 1}  # kept for the operator, and for the next sweep


class CountingConnection(RedisConnection):
    """A connection that counts what it sends: one ``send_packed_command`` is one round trip (a pipeline too)."""

    sent = 0

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(*args, **kwargs)


@pytest.mark.redis
async def test_round_trips_per_share_and_claim(redis_url: str, key_prefix: str) -> None:
    """Share: 2. Claim: 4 (lookup, TAKE, APPLY, FINISH), by code or by cart key. A replay: 3 (lookup, FINISH of
    an outbox a stopped claim may have left, view). A wrong code: 3 (lookup, replay check, count)."""
    client = redis_async.Redis.from_url(redis_url, connection_class=CountingConnection, **TEXT_REPLIES)
    store = CartStore(client, backend="redis", key_prefix=key_prefix, max_quantity=5, max_lines=3)
    try:
        await fill(store, "warm", {"t:a": 1})
        await claim(store, "warm-2", code=(await store.transfers.share("warm", SECRET)).code)  # scripts loaded
        await store.view("warm-2")

        async def trips(operation: Any) -> int:
            before = CountingConnection.sent
            try:
                await operation
            except TransferCodeError:
                pass
            return CountingConnection.sent - before

        await fill(store, "src", {"t:a": 1})
        shared: list[Any] = []

        async def share() -> None:
            shared.append(await store.transfers.share("src", SECRET))

        counted = {"share_cart": await trips(share())}
        claim_id = new_claim_id()
        counted["claim by code"] = await trips(claim(store, "dst", code=shared[0].code, claim_id=claim_id))
        counted["claim replayed"] = await trips(claim(store, "dst", code=shared[0].code, claim_id=claim_id))
        counted["claim, wrong code"] = await trips(claim(store, "dst", code="BBBB-BBBB"))
        await fill(store, "src", {"t:b": 1})
        by_cart = new_claim_id()
        counted["claim by cart key"] = await trips(claim(store, "dst", source_key="src", claim_id=by_cart))
        counted["claim by cart key, replayed"] = await trips(claim(store, "dst", source_key="src", claim_id=by_cart))
        print(f"\nround trips: {counted}")
        assert counted == {
            "share_cart": 2,
            "claim by code": 4,
            "claim replayed": 3,
            "claim, wrong code": 3,
            "claim by cart key": 4,
            "claim by cart key, replayed": 3,
        }
    finally:
        await drop_keys(store)
        await store.aclose()


@pytest.mark.redis
async def test_bytes_the_transfer_keys_add(redis_url: str, key_prefix: str) -> None:
    """MEMORY USAGE of each transfer key of one cart (minted session keys of 34 characters)."""
    store = connect("redis", key_prefix, redis_url=redis_url)
    try:
        source, target = "c-" + "a" * 32, "c-" + "b" * 32
        await fill(store, source, {"t:a": 1, "t:b": 2})
        await store.transfers.share(source, SECRET)
        hashed = await store.client.get(store.transfers.share_key(source))
        sizes = {
            "share": await store.client.memory_usage(store.transfers.share_key(source)),
            "code": await store.client.memory_usage(store.transfers.code_key(hashed)),
        }
        claim_id = new_claim_id()
        await store.transfers.take(source, target, claim_id, "merge", "", "")
        sizes["outbox (2 lines)"] = await store.client.memory_usage(store.transfers.outbox_key(source))
        sizes["took marker"] = await store.client.memory_usage(store.transfers.took_key(source, claim_id))
        await store.transfers.finish_stalled(0, refresh=catalog(), now=int(time.time()) + 1)
        sizes["claim marker"] = await store.client.memory_usage(store.transfers.marker_key(target, claim_id))
        with pytest.raises(TransferCodeError):
            await claim(store, target, code="BBBB-BBBB")
        sizes["failure counter"] = await store.client.memory_usage(store.transfers.limits.caller_key(CALLER))
        print(f"\nbytes (MEMORY USAGE, prefix of {len(key_prefix)} characters): {sizes}")
        assert all(0 < size < 400 for size in sizes.values()), sizes
    finally:
        await drop_keys(store)
        await store.aclose()
