"""Claims interrupted between steps, and raced: no quantity doubles, no line is lost.

What is broken where:
- in-process: the protocol stops after TAKE or after APPLY (an exception), on every backend;
- a real worker process SIGKILLed after TAKE or after APPLY, on a real Redis and on a 3-primary cluster
  (source and target on different primaries);
- Redis itself failing between the steps: a redis-server (AOF, ``appendfsync always``) SIGKILLed after
  TAKE or after APPLY and restarted; a cluster primary frozen (SIGSTOP) while the next step waits on it;
- the same claim retried and raced from several processes and tasks; different claims racing for one code.
Each is then finished by the same claim retried, by another claim of that source, or by the sweep, and
the units in source + target + unapplied outbox are checked at every point.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import fakeredis
import pytest
import pytest_asyncio

from harness.processes import REPO, RedisProcess
from service.cart_transfers import CartTransfers, TransferCodeError, new_claim_id
from service.carts import CartStorageError, CartStore
from tests.redis_backends import REAL_REDIS, REAL_REDIS_NAMES, real_redis_url
from tests.redis_server import RedisCluster, require_redis_server
from tests.transfer_support import (
    CALLER,
    SECRET,
    apart,
    catalog,
    connect,
    drop_keys,
    fill,
    held,
    in_outbox,
    primary_of,
    units,
)
from tests.transfer_worker import StoppingTransfers, claim_many

Factory = Callable[..., CartStore]
SOURCE_LINES = {"t:a": 2, "t:b": 2}
TARGET_LINES = {"t:a": 1, "t:c": 1}
MERGED = {"t:a": 3, "t:b": 2, "t:c": 1}  # nothing capped: every unit must be accounted for
TOTAL = sum(SOURCE_LINES.values()) + sum(TARGET_LINES.values())
AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


class Interrupted(Exception):
    """The worker 'died' here."""


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


def stopping(store: CartStore, step: str) -> CartTransfers:
    """``store.transfers`` replaced by one that raises ``Interrupted`` right after ``step``."""
    transfers = StoppingTransfers(store)
    transfers.stop_after, transfers.error = step, Interrupted()
    store.transfers = transfers
    return transfers


async def prepared(store: CartStore) -> tuple[str, str, str]:
    """Source and target carts (on different primaries on a cluster) and the source's code."""
    source, target = await apart(store, "src", "dst")
    await fill(store, source, SOURCE_LINES)
    await fill(store, target, TARGET_LINES)
    shared = await store.transfers.share(source, SECRET)
    return source, target, shared.code


async def assert_finished(store: CartStore, source: str, target: str) -> None:
    assert await held(store, target) == MERGED
    assert not await store.client.exists(store.transfers.outbox_key(source))
    assert await units(store, source, target) == TOTAL


# ---------------------------------------------------------------- in-process: stopped after a step, every backend


@pytest.mark.parametrize("step", ["take", "apply"])
@pytest.mark.parametrize("recovery", ["retry", "another claim", "sweep"])
async def test_a_claim_stopped_between_steps_is_finished_once(make_store: Factory, step: str, recovery: str) -> None:
    worker, other = make_store(), make_store()
    source, target, code = await prepared(worker)
    claim_id = new_claim_id()
    stopping(worker, step)
    with pytest.raises(Interrupted):
        await worker.transfers.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
        )
    # Where it stopped: the lines are in the outbox (not yet or already applied), never in two places at once.
    assert await held(other, source) == {}
    assert await in_outbox(other, source) == SOURCE_LINES
    assert await held(other, target) == (TARGET_LINES if step == "take" else MERGED)
    assert await units(other, source, target) == TOTAL

    if recovery == "retry":  # the same claim again (same id), through another worker
        claimed = await other.transfers.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
        )
        assert claimed.replayed == (step == "apply")
        assert {line.product_id: line.quantity for line in claimed.cart.lines} == MERGED
    elif recovery == "another claim":  # the source chat goes on, shares again, a third cart claims it
        await fill(other, source, {"t:d": 1})
        fresh = await other.transfers.share(source, SECRET)
        claimed = await other.transfers.claim(
            "third",
            secret=SECRET,
            code=fresh.code,
            mode="merge",
            claim_id=new_claim_id(),
            refresh=catalog(),
            caller=CALLER,
        )
        assert {line.product_id: line.quantity for line in claimed.cart.lines} == {"t:d": 1}
        await drop_third(other)
    else:
        report = await other.transfers.finish_stalled(30, refresh=catalog(), now=int(time.time()) + 31)
        assert report.finished == 1
    await assert_finished(other, source, target)
    with pytest.raises(TransferCodeError):  # the code was used, whoever finished its claim
        await other.transfers.claim(
            "fourth", secret=SECRET, code=code, mode="merge", claim_id=new_claim_id(), refresh=catalog(), caller=CALLER
        )


async def drop_third(store: CartStore) -> None:
    await store.clear("third")


async def test_a_retry_without_the_key_finishes_the_stalled_claim_and_answers_it(make_store: Factory) -> None:
    """The shopper retries the same code with a new claim id (no idempotency key): the stalled claim into this
    cart is finished and answered, not refused as a used code."""
    worker, other = make_store(), make_store()
    source, target, code = await prepared(worker)
    stopping(worker, "take")
    with pytest.raises(Interrupted):
        await worker.transfers.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=new_claim_id(), refresh=catalog(), caller=CALLER
        )
    claimed = await other.transfers.claim(
        target, secret=SECRET, code=code, mode="merge", claim_id=new_claim_id(), refresh=catalog(), caller=CALLER
    )
    assert {line.product_id: line.quantity for line in claimed.cart.lines} == MERGED and claimed.lines == 2
    await assert_finished(other, source, target)
    assert await other.client.get(other.transfers.limits.total_key) is None  # not counted as a failure


async def test_the_same_claim_raced_by_tasks_applies_once(make_store: Factory) -> None:
    stores = [make_store() for _ in range(3)]
    source, target, code = await prepared(stores[0])
    claim_id = new_claim_id()
    results = await asyncio.gather(
        *(
            stores[index % 3].transfers.claim(
                target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
            )
            for index in range(12)
        )
    )
    # "replayed" means "this call changed nothing": the call whose TAKE moved the lines says false, and so may
    # one that found them pending and applied them first; the rest say true. The cart has them once.
    assert 1 <= [result.replayed for result in results].count(False) <= 2
    assert all(result.lines == 2 for result in results)
    await assert_finished(stores[0], source, target)


# ---------------------------------------------------------------- real processes, real Redis and a cluster


@pytest.fixture(
    params=[pytest.param("redis", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
def real_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def real_store(request: pytest.FixtureRequest, real_backend: str, key_prefix: str) -> AsyncIterator[CartStore]:
    if real_backend == "redis":
        store = connect("redis", key_prefix, redis_url=request.getfixturevalue("redis_url"))
    else:
        store = connect("cluster", key_prefix, cluster=request.getfixturevalue("redis_cluster"))
    try:
        yield store
    finally:
        await drop_keys(store)
        await store.aclose()


def spec_of(store: CartStore, **spec: Any) -> dict[str, Any]:
    """What a worker process needs to open the same store."""
    cluster = store.backend == "redis-cluster"
    node = store.client.get_default_node() if cluster else None
    url = f"redis://{node.host}:{node.port}/0" if node else _url_of(store)
    return {"url": url, "cluster": cluster, "prefix": store.key_prefix, **spec}


def _url_of(store: CartStore) -> str:
    kwargs = store.client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def run_worker_until_killed(spec: dict[str, Any]) -> str:
    """Start a worker process for the claim, wait until it reports the step done, SIGKILL it; its last words."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.transfer_worker", json.dumps(spec)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
        return line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize("step", ["take", "apply"])
async def test_a_worker_process_killed_between_steps(real_store: CartStore, step: str) -> None:
    store = real_store
    source, target, code = await prepared(store)
    claim_id = new_claim_id()
    said = await asyncio.to_thread(
        run_worker_until_killed, spec_of(store, target=target, code=code, claim_id=claim_id, stop_after=step)
    )
    assert said == f"stopped after {step}"
    assert await in_outbox(store, source) == SOURCE_LINES
    assert await held(store, target) == (TARGET_LINES if step == "take" else MERGED)
    assert await units(store, source, target) == TOTAL
    if store.backend == "redis-cluster":
        assert await primary_of(store, store.cart_key(source)) != await primary_of(store, store.cart_key(target))

    # The shopper retries (the same idempotency key, so the same claim id) through another worker process.
    retried = await asyncio.to_thread(claim_many, spec_of(store, target=target, code=code, claim_id=claim_id), 1)
    assert retried == [{"lines": MERGED, "count": 2, "replayed": step == "apply", "skipped": []}]
    await assert_finished(store, source, target)


async def test_a_worker_killed_after_take_is_finished_by_the_sweep_of_another(real_store: CartStore) -> None:
    store = real_store
    source, target, code = await prepared(store)
    spec = spec_of(store, target=target, code=code, claim_id=new_claim_id(), stop_after="take")
    assert await asyncio.to_thread(run_worker_until_killed, spec) == "stopped after take"
    assert (await store.transfers.finish_stalled(30, refresh=catalog())).finished == 0  # still young
    report = await store.transfers.finish_stalled(30, refresh=catalog(), now=int(time.time()) + 31)
    assert report.finished == 1
    await assert_finished(store, source, target)


async def test_the_same_claim_raced_from_processes_applies_once(real_store: CartStore) -> None:
    """4 processes x 4 tasks make one claim (one claim id, as retries with one idempotency key) at once: every
    one answers the claim, exactly one applied it."""
    store = real_store
    source, target, code = await prepared(store)
    spec = spec_of(store, target=target, code=code, claim_id=new_claim_id())
    outcomes = race(spec, [{}] * 4)
    assert all(outcome.get("lines") == MERGED and outcome["count"] == 2 for outcome in outcomes), outcomes
    changed = [outcome["replayed"] for outcome in outcomes].count(False)
    print(f"\n16 racers of one claim: {changed} changed something, {16 - changed} answered replayed")
    assert 1 <= changed <= 2, outcomes
    await assert_finished(store, source, target)


async def test_rival_claims_of_one_code_from_processes_one_wins(real_store: CartStore) -> None:
    """16 carts (4 processes x 4 tasks, on every primary of a cluster) claim one code at once: exactly one gets
    the lines, the 15 others are told the code is used, and every unit is in the winner's cart or the target."""
    store = real_store
    source, target, code = await prepared(store)
    await store.clear(target)  # the target is one rival among the others here
    targets = [f"rival-{index}" for index in range(16)]
    ids = [new_claim_id() for _ in targets]
    spec = spec_of(store, code=code, target="")
    outcomes = race(
        spec, [{"targets": targets[i * 4 : i * 4 + 4], "claim_ids": ids[i * 4 : i * 4 + 4]} for i in range(4)]
    )
    winners = [outcome for outcome in outcomes if "lines" in outcome]
    assert len(winners) == 1 and winners[0]["lines"] == SOURCE_LINES and not winners[0]["replayed"], outcomes
    assert [outcome.get("refused") for outcome in outcomes].count("TransferCodeError") == 15, outcomes
    assert await units(store, source, *targets) == sum(SOURCE_LINES.values())
    assert not await store.client.exists(store.transfers.outbox_key(source))


def race(spec: dict[str, Any], per_process: list[dict[str, Any]], tasks: int = 4) -> list[dict[str, Any]]:
    """One process per entry of ``per_process`` (its overrides of ``spec``), ``tasks`` claims at once in each."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(per_process), mp_context=context) as pool:
        futures = [pool.submit(claim_many, {**spec, **overrides}, tasks) for overrides in per_process]
        return [outcome for future in futures for outcome in future.result(timeout=120)]


# ---------------------------------------------------------------- Redis failing between steps


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    require_redis_server("to kill a Redis")
    server = RedisProcess(extra_args=AOF_ARGS).start()
    try:
        yield server
    finally:
        server.stop()


class RedisDies(CartTransfers):
    """After ``step``, the Redis server is SIGKILLed (the step's writes are on disk: appendfsync always)."""

    step = ""
    server: RedisProcess

    async def take(self, *args: Any, **kwargs: Any) -> tuple[str, list[str], str]:
        result = await super().take(*args, **kwargs)
        if self.step == "take":
            self.server.kill()
        return result

    async def apply(self, *args: Any, **kwargs: Any) -> tuple[str, str, list[str]]:
        result = await super().apply(*args, **kwargs)
        if self.step == "apply":
            self.server.kill()
        return result


@pytest.mark.redis
@pytest.mark.parametrize("step", ["take", "apply"])
async def test_redis_killed_between_steps_and_restarted(aof_redis: RedisProcess, key_prefix: str, step: str) -> None:
    store = connect("redis", key_prefix, redis_url=aof_redis.url)
    try:
        source, target, code = await prepared(store)
        dying = RedisDies(store)
        dying.step, dying.server = step, aof_redis
        store.transfers = dying
        claim_id = new_claim_id()
        with pytest.raises(CartStorageError):  # the next step finds no Redis
            await store.transfers.claim(
                target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
            )
        restarted = RedisProcess(port=aof_redis.port, extra_args=AOF_ARGS, workdir=aof_redis.workdir).start()
        aof_redis.process = restarted.process  # the fixture stops it
        assert await in_outbox(store, source) == SOURCE_LINES
        assert await held(store, target) == (TARGET_LINES if step == "take" else MERGED)
        assert await units(store, source, target) == TOTAL

        store.transfers = CartTransfers(store)
        claimed = await store.transfers.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
        )
        assert claimed.replayed == (step == "apply")
        await assert_finished(store, source, target)
    finally:
        await store.aclose()


class PrimaryFreezes(CartTransfers):
    """After ``step``, the primary the next step needs is frozen (SIGSTOP) until the test thaws it: that step's
    command waits in the socket, the client times out, and the primary may run it later, when it thaws."""

    step = ""
    frozen: RedisProcess | None = None
    nodes: dict[str, RedisProcess]
    next_key: str = ""

    async def take(self, *args: Any, **kwargs: Any) -> tuple[str, list[str], str]:
        result = await super().take(*args, **kwargs)
        if self.step == "take":
            await self._freeze()
        return result

    async def apply(self, *args: Any, **kwargs: Any) -> tuple[str, str, list[str]]:
        result = await super().apply(*args, **kwargs)
        if self.step == "apply":
            await self._freeze()
        return result

    async def _freeze(self) -> None:
        self.frozen = self.nodes[await primary_of(self.store, self.next_key)]
        assert self.frozen.process is not None
        self.frozen.process.send_signal(signal.SIGSTOP)


@pytest.mark.redis
@pytest.mark.parametrize("step", ["take", "apply"])
async def test_a_cluster_primary_frozen_between_steps(redis_cluster: RedisCluster, key_prefix: str, step: str) -> None:
    store = connect("cluster", key_prefix, cluster=redis_cluster)
    freezing = PrimaryFreezes(store)
    try:
        source, target, code = await prepared(store)
        freezing.step = step
        freezing.nodes = {f"127.0.0.1:{node.port}": node for node in redis_cluster.nodes}
        # After TAKE, APPLY needs the target's primary; after APPLY, FINISH needs the source's.
        freezing.next_key = store.cart_key(target if step == "take" else source)
        store.transfers = freezing
        claim_id = new_claim_id()
        try:
            with pytest.raises(CartStorageError) as failed:
                await store.transfers.claim(
                    target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
                )
            assert failed.value.maybe_applied
        finally:
            if freezing.frozen is not None and freezing.frozen.process is not None:
                freezing.frozen.process.send_signal(signal.SIGCONT)
        await wait_for_cluster(redis_cluster)
        assert await units(store, source, target) == TOTAL
        retried = CartTransfers(store)
        claimed = await retried.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
        )
        # Frozen after TAKE, the primary ran the queued APPLY once it thawed, or the retry did: once either way.
        assert {line.product_id: line.quantity for line in claimed.cart.lines} == MERGED
        print(
            f"\nprimary frozen after {step.upper()}: the next step failed ({failed.value.kind}, maybe applied); "
            f"the retry answered replayed={claimed.replayed}; target {MERGED}, outbox gone"
        )
        store.transfers = retried
        await assert_finished(store, source, target)
    finally:
        await drop_keys(store)
        await store.aclose()


async def wait_for_cluster(cluster: RedisCluster, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(cluster._state_ok(node) for node in cluster.nodes):
        assert time.monotonic() < deadline, "the cluster did not recover"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def aof_cluster() -> Iterator[RedisCluster]:
    """A 3-primary cluster of its own whose primaries write every change to their AOF (appendfsync always), so
    one can be SIGKILLed and restarted with its data, as a crash of a persistent primary."""
    require_redis_server("for a Redis Cluster")
    cluster = RedisCluster(size=3).start()
    try:
        for node in cluster.nodes:
            with node.client() as client:
                client.config_set("appendfsync", "always")
                client.config_set("appendonly", "yes")
                deadline = time.monotonic() + 10
                while (
                    client.info("persistence")["aof_rewrite_in_progress"]
                    or not client.info("persistence")["aof_enabled"]
                ):
                    assert time.monotonic() < deadline, "AOF did not start"
                    time.sleep(0.05)
            node.extra_args = (*node.extra_args, *AOF_ARGS)
        yield cluster
    finally:
        cluster.stop()


class PrimaryDies(CartTransfers):
    """After ``step``, the primary the next step needs is SIGKILLed."""

    step = ""
    killed: RedisProcess | None = None
    nodes: dict[str, RedisProcess]
    next_key: str = ""

    async def take(self, *args: Any, **kwargs: Any) -> tuple[str, list[str], str]:
        result = await super().take(*args, **kwargs)
        if self.step == "take":
            await self._kill()
        return result

    async def apply(self, *args: Any, **kwargs: Any) -> tuple[str, str, list[str]]:
        result = await super().apply(*args, **kwargs)
        if self.step == "apply":
            await self._kill()
        return result

    async def _kill(self) -> None:
        self.killed = self.nodes[await primary_of(self.store, self.next_key)]
        self.killed.kill()


@pytest.mark.redis
@pytest.mark.parametrize("step", ["take", "apply"])
async def test_a_cluster_primary_killed_between_steps_and_restarted(
    aof_cluster: RedisCluster, key_prefix: str, step: str
) -> None:
    store = connect("cluster", key_prefix, cluster=aof_cluster)
    dying = PrimaryDies(store)
    try:
        source, target, code = await prepared(store)
        dying.step = step
        dying.nodes = {f"127.0.0.1:{node.port}": node for node in aof_cluster.nodes}
        dying.next_key = store.cart_key(target if step == "take" else source)
        store.transfers = dying
        claim_id = new_claim_id()
        with pytest.raises(CartStorageError):
            await store.transfers.claim(
                target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
            )
        killed = dying.killed
        assert killed is not None
        index = aof_cluster.nodes.index(killed)
        restarted = RedisProcess(port=killed.port, extra_args=killed.extra_args, workdir=killed.workdir).start()
        aof_cluster.nodes[index] = restarted  # the fixture stops it
        await wait_for_cluster(aof_cluster)
        assert await units(store, source, target) == TOTAL
        retried = CartTransfers(store)
        claimed = await retried.claim(
            target, secret=SECRET, code=code, mode="merge", claim_id=claim_id, refresh=catalog(), caller=CALLER
        )
        assert {line.product_id: line.quantity for line in claimed.cart.lines} == MERGED
        assert claimed.replayed == (step == "apply")
        print(f"\nprimary {killed.port} SIGKILLed after {step.upper()}, restarted from its AOF: the retry finished it")
        store.transfers = retried
        await assert_finished(store, source, target)
    finally:
        await drop_keys(store)
        await store.aclose()
