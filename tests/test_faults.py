"""Faults beyond ``test_e2e_http``'s Redis outage: the retry policy, Redis restarting under a live pool,
a worker SIGKILLed under load, and Redis (AOF, ``appendfsync always``) SIGKILLed under load."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, OutOfMemoryError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from harness.processes import RedisProcess, ServeProcess, free_port
from service.answers import storage_error_text
from service.carts import CartStorageError, CartStore
from tests.jsonrpc import add_calls
from tests.redis_server import require_redis_server

OATS = "demo-market:i1702"
AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


def new_prefix() -> str:
    return f"weft-fault-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A Redis of the test's own, which it may kill."""
    require_redis_server("to kill a Redis")
    with RedisProcess(extra_args=AOF_ARGS) as server:
        yield server


def restart(server: RedisProcess) -> RedisProcess:
    """The same port, the same directory (so the same AOF), a new process."""
    return RedisProcess(port=server.port, extra_args=server.extra_args, workdir=server.workdir).start()


# ---------------------------------------------------------------- the retry policy


class Flaky:
    """A stand-in script that fails ``failures`` times with ``error``, then runs the real one."""

    def __init__(self, real: Any, error: Exception, failures: int) -> None:
        self.real, self.error, self.failures, self.calls = real, error, failures, 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return await self.real(*args, **kwargs)


async def test_idempotent_calls_retry_connection_errors_and_adds_do_not() -> None:
    store = CartStore.connect(None)
    await store.add("s", OATS, 1, "Oats", Decimal("18.90"))
    store._view = Flaky(store._view, RedisConnectionError("Connection reset by peer"), 2)  # type: ignore[method-assign]
    assert [line.quantity for line in (await store.view("s")).lines] == [1]
    assert store._view.calls == 3  # type: ignore[attr-defined]

    store._set_quantity = Flaky(store._set_quantity, RedisConnectionError("reset"), 1)  # type: ignore[method-assign]
    assert [line.quantity for line in (await store.set_quantity("s", OATS, 4)).lines] == [4]

    store._add = Flaky(store._add, RedisConnectionError("Connection reset by peer"), 1)  # type: ignore[method-assign]
    with pytest.raises(CartStorageError):
        await store.add("s", OATS, 1, "Oats", Decimal("18.90"))
    assert store._add.calls == 1  # type: ignore[attr-defined]  # an add is never repeated
    assert [line.quantity for line in (await store.view("s")).lines] == [4]
    await store.aclose()


async def test_timeouts_are_not_retried() -> None:
    """A timeout costs 1.5 s: retrying one would break the 2 s answer, and the script may have run."""
    store = CartStore.connect(None)
    store._view = Flaky(store._view, RedisTimeoutError("Timeout reading from socket"), 1)  # type: ignore[method-assign]
    with pytest.raises(CartStorageError) as raised:
        await store.view("s")
    assert raised.value.maybe_applied and store._view.calls == 1  # type: ignore[attr-defined]
    await store.aclose()


async def test_a_dead_redis_fails_fast_after_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    store = CartStore.connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    caplog.set_level(logging.INFO, logger="service.carts")
    for call in (lambda: store.view("s"), store.ping, store.count_carts, lambda: store.clear("s")):
        caplog.clear()
        started = time.monotonic()
        with pytest.raises(CartStorageError) as raised:
            await call()
        assert time.monotonic() - started < 2.0
        assert not raised.value.maybe_applied
        attempts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Cart storage attempt")]
        assert [message[:34] for message in attempts] == [f"Cart storage attempt {n} of 3 failed" for n in (1, 2, 3)]
    caplog.clear()
    with pytest.raises(CartStorageError):
        await store.add("s", OATS, 1, "Oats", Decimal("18.90"))
    assert not any("attempt" in record.getMessage() for record in caplog.records)  # one try, no retry
    await store.aclose()


@pytest.mark.redis
async def test_pool_survives_a_redis_restart(private_redis: RedisProcess) -> None:
    """Redis restarts between two calls: the pooled connections are dead, the next call still works."""
    store = CartStore.connect(private_redis.url, key_prefix=new_prefix())
    try:
        await store.add("s", OATS, 2, "Oats", Decimal("18.90"))
        private_redis.kill()
        revived = restart(private_redis)
        try:
            assert [line.quantity for line in (await store.view("s")).lines] == [2]  # AOF kept it
            assert [line.quantity for line in (await store.add("s", OATS, 1, "Oats", Decimal("18.90"))).lines] == [3]
        finally:
            revived.stop()
    finally:
        await store.aclose()


# ---------------------------------------------------------------- under load: a worker, then Redis, killed


def worker_pids(supervisor: int) -> set[int]:
    """uvicorn's worker processes: the supervisor's children started by multiprocessing's spawn."""
    pids: set[int] = set()
    for children in Path(f"/proc/{supervisor}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in command:
                pids.add(int(pid))
    return pids


def quantities(client: redis.Redis, prefix: str, session_ids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for session_id in session_ids:
        value = client.hget(f"{prefix}:cart:{{{session_id}}}", OATS)
        found[session_id] = json.loads(value)["q"] if value else 0
    return found


def check_acknowledged_present(
    calls: list[tuple[str, str]], outcomes: list[bool | None], stored: dict[str, int]
) -> dict[str, int]:
    """Every acknowledged add is in its cart. One that was not acknowledged may be there or not: a
    connection that dies after the script ran answers "storage unavailable" (an isError) or nothing."""
    acked = Counter(session for (session, _), outcome in zip(calls, outcomes, strict=True) if outcome is True)
    sent = Counter(session for session, _ in calls)
    for session, quantity in stored.items():
        assert acked[session] <= quantity <= sent[session], (session, quantity, acked[session], sent[session])
    unacked_present = sum(max(0, stored[session] - acked[session]) for session in stored)
    return {
        "acknowledged": sum(acked.values()),
        "unanswered": sum(1 for o in outcomes if o is None),
        "storage_errors": sum(1 for o in outcomes if o is False),
        "unacknowledged_but_stored": unacked_present,
    }


def run_in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(target(*args)), daemon=True)
    thread.start()
    return thread, box


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


@pytest.mark.e2e
@pytest.mark.redis
def test_worker_sigkilled_under_load_loses_no_cart(private_redis: RedisProcess) -> None:
    """Both original workers are SIGKILLed in turn while adds stream in (so the one holding the client's
    connections dies too); uvicorn replaces them, and every acknowledged add is in its cart."""
    prefix = new_prefix()
    env = {"WEFT_REDIS_URL": private_redis.url, "WEFT_KEY_PREFIX": prefix}
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    with ServeProcess(env=env, extra_args=["--workers", "2"]) as pool:
        assert pool.process is not None
        supervisor = pool.process.pid
        wait_for(lambda: len(worker_pids(supervisor)) == 2, 20, "two workers")
        originals = worker_pids(supervisor)
        calls = [(f"kill-{index % 40}", OATS) for index in range(2000)]
        thread, box = run_in_thread(add_calls, [pool.mcp_url], calls, 16)
        wait_for(lambda: client.dbsize() >= 20, 20, "the first carts")
        for victim in sorted(originals):
            assert thread.is_alive(), "the load ended before every worker was killed; add more calls"
            os.kill(victim, signal.SIGKILL)
            wait_for(
                lambda v=victim: v not in worker_pids(supervisor) and len(worker_pids(supervisor)) == 2,
                20,
                "a replacement worker",
            )
        thread.join(timeout=120)
        assert not thread.is_alive()
        (outcomes,) = box
        assert not worker_pids(supervisor) & originals and pool.is_alive()

        after_calls = [(f"kill-{index % 40}", OATS) for index in range(80)]
        after = add_calls([pool.mcp_url], after_calls, 8)
        assert after == [True] * len(after), after  # the pool serves fully again

        stored = quantities(client, prefix, {session for session, _ in calls})
        figures = check_acknowledged_present(calls + after_calls, outcomes + after, stored)
        assert figures["acknowledged"] > 1000, figures
        print(f"\nworkers {sorted(originals)} SIGKILLed in turn under load: {figures}, carts {len(stored)}")
    client.close()


@pytest.mark.e2e
@pytest.mark.redis
def test_redis_aof_sigkilled_under_load_keeps_every_acknowledged_add(private_redis: RedisProcess) -> None:
    prefix = new_prefix()
    env = {"WEFT_REDIS_URL": private_redis.url, "WEFT_KEY_PREFIX": prefix}
    client = redis.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=2)
    revived: RedisProcess | None = None
    with ServeProcess(env=env) as shop:
        calls = [(f"aof-{index}", OATS) for index in range(1500)]  # one cart per add: each one is visible
        thread, box = run_in_thread(add_calls, [shop.mcp_url], calls, 8)
        # Carts only: the worker also writes the generated secret and the transfer sweep's lease.
        wait_for(lambda: len(list(client.scan_iter(f"{prefix}:cart:*", count=1000))) >= 150, 20, "150 carts")
        private_redis.kill()  # SIGKILL: no shutdown, no final fsync
        thread.join(timeout=120)
        assert not thread.is_alive()
        (outcomes,) = box
        assert shop.is_alive()
        try:
            revived = restart(private_redis)
            client = redis.Redis.from_url(revived.url, decode_responses=True)
            stored = quantities(client, prefix, {session for session, _ in calls})
            figures = check_acknowledged_present(calls, outcomes, stored)
            assert figures["acknowledged"] >= 150 and figures["storage_errors"] > 0, figures  # killed mid-load
            print(f"\nRedis (AOF, appendfsync always) SIGKILLed under load: {figures}, all acknowledged present")
        finally:
            client.close()
            if revived is not None:
                revived.stop()


# ---------------------------------------------------------------- what failed, and whether it may have run


@pytest.mark.parametrize(
    ("error", "kind", "maybe_applied"),
    [
        (RedisTimeoutError("Timeout reading from socket"), "timeout", True),
        (RedisConnectionError("Connection closed by server."), "unreachable", True),
        (RedisTimeoutError("Timeout connecting to server"), "timeout", False),
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), "unreachable", False),
        (AuthenticationError("invalid username-password pair or user is disabled."), "authentication", False),
        (
            NoPermissionError("this user has no permissions to access one of the keys used as arguments"),
            "permission",
            False,
        ),
        (
            OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script: 1f, on @user_script:26."),
            "full",
            False,
        ),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), "damaged", False),
        (ResponseError("ERR something else"), "failed", False),
    ],
)
async def test_an_add_says_may_have_been_saved_only_when_it_was_sent_unanswered(
    error: Exception, kind: str, maybe_applied: bool
) -> None:
    store = CartStore.connect(None)
    store._add = Flaky(store._add, error, 1)  # type: ignore[method-assign]
    with pytest.raises(CartStorageError) as raised:
        await store.add("s", OATS, 1, "Oats", Decimal("18.90"))
    assert (raised.value.kind, raised.value.maybe_applied) == (kind, maybe_applied)
    text = storage_error_text(raised.value, retry_safe=False)
    assert ("may still have been saved" in text) is maybe_applied, text
    assert len(text.split(". ")) <= 2 and "Error" not in text, text
    if not maybe_applied:
        assert "nothing was saved" in text or "nothing was changed" in text, text
    await store.aclose()
