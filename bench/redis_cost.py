"""(b) Redis commands per tool call, (c) bytes per cart, (d) counting carts under load."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from bench.load import Connection, median, percentile, tool_call
from bench.procs import bench_redis, redis_config, unpin, weft_server
from bench.throughput import demo_products
from harness.processes import REPO, pin
from service.carts import CartStore, cart_key, line_value_tail
from service.catalog import load_catalog, load_products_file

SHARED_CATALOG = REPO.parent / "shared" / "data" / "nitzat-haduvdevan-products.json"


# ---------------------------------------------------------------- (b) commands per call, by MONITOR


def _monitor(port: int, seen: list[dict[str, Any]], ready: threading.Event, end_marker: str) -> None:
    client = redis.Redis(port=port, decode_responses=True)
    with client.monitor() as monitor:
        ready.set()
        for command in monitor.listen():
            seen.append(command)
            if end_marker in command["command"]:
                return


# One step of the round-trip table: (label, tool, arguments, conversation suffix or None, extra _meta), built from
# what this conversation's earlier steps answered (``state``: cart_id, code, idempotency key).
Step = tuple[str, str, dict[str, Any], str | None, dict[str, Any]]
StepPlan = tuple[str, Callable[[dict[str, Any]], Step]]


def tool_steps(product: str) -> list[StepPlan]:
    """Every tool, in an order where each step has what it needs (a code to claim, a line to update)."""

    def step(label: str, tool: str, arguments: dict[str, Any], suffix: str | None = "", **meta: Any) -> Step:
        return (label, tool, arguments, suffix, meta)

    return [
        ("list_stores", lambda s: step("list_stores", "list_stores", {})),
        ("search_products", lambda s: step("search_products", "search_products", {"search": ""})),
        ("add_to_cart (new line)", lambda s: step("", "add_to_cart", {"product_id": product, "quantity": 1})),
        ("add_to_cart (existing line)", lambda s: step("", "add_to_cart", {"product_id": product, "quantity": 1})),
        (
            "add_to_cart (idempotency-key)",
            lambda s: step("", "add_to_cart", {"product_id": product, "quantity": 1}, **{"idempotency-key": s["key"]}),
        ),
        (
            "add_to_cart (replayed key)",
            lambda s: step("", "add_to_cart", {"product_id": product, "quantity": 1}, **{"idempotency-key": s["key"]}),
        ),
        ("update_cart_item", lambda s: step("", "update_cart_item", {"product_id": product, "quantity": 5})),
        ("view_cart", lambda s: step("", "view_cart", {})),
        ("view_cart (cart_id, no _meta)", lambda s: step("", "view_cart", {"cart_id": s["cart_id"]}, None)),
        ("share_cart", lambda s: step("", "share_cart", {})),
        ("claim_cart (code)", lambda s: step("", "claim_cart", {"code": s["code"]}, "-target")),
        ("claim_cart (from_cart_id)", lambda s: step("", "claim_cart", {"from_cart_id": s["target_cart_id"]})),
        ("claim_cart (wrong code)", lambda s: step("", "claim_cart", {"code": "BBBB-BBBB"}, "-target")),
        ("remove_from_cart (last line)", lambda s: step("", "remove_from_cart", {"product_id": product})),
        ("view_cart (empty cart)", lambda s: step("", "view_cart", {})),
        ("clear_cart", lambda s: step("", "clear_cart", {})),
        ("add_to_cart (minted: no id)", lambda s: step("", "add_to_cart", {"product_id": product}, None)),
    ]


def _remember(state: dict[str, Any], label: str, suffix: str | None, answer: dict[str, Any]) -> None:
    data = answer.get("result", {}).get("structuredContent") or {}
    if label == "share_cart":
        state["code"] = data["code"]
    if label == "claim_cart (code)":
        state["target_cart_id"] = data["cart_id"]
    if suffix == "" and data.get("cart_id"):
        state["cart_id"] = data["cart_id"]


def commands_per_call(calls: int) -> dict[str, float]:
    """Every tool ``calls`` times through a real worker: the client commands Redis receives per call (MONITOR
    tells them from the commands scripts run). Pipelined commands count one each, though they share a round trip."""
    steps = tool_steps(demo_products()[0])
    wrong_code_expected = {"claim_cart (wrong code)"}
    with bench_redis(shipped=True) as redis_server:
        weft = weft_server(redis_server.url).start()
        try:
            # Steady state: a worker's first call of each script also loads it (EVALSHA, NOSCRIPT,
            # SCRIPT LOAD, EVALSHA), once per script per worker; that warm-up is not counted.
            marker = redis_server.client()

            async def drive(prefix: str, calls: int) -> None:
                connection = await Connection(weft.port).open()
                states = [{"key": f"{prefix}-key-{i}"} for i in range(calls)]
                try:
                    for label, build in steps:
                        marker.echo(f"bench-step {label}")
                        for i in range(calls):
                            _, tool, arguments, suffix, meta = build(states[i])
                            message = tool_call(tool, arguments, None, i)
                            session = None if suffix is None else f"{prefix}-{i}{suffix}"
                            if session is not None or meta:
                                message["params"]["_meta"] = {**({"sessionId": session} if session else {}), **meta}
                            status, body = await connection.call(message)
                            failed = b'"isError":true' in body
                            if status != 200 or failed != (label in wrong_code_expected):
                                raise RuntimeError(f"{label} answered unexpectedly: {body[:300]!r}")
                            _remember(states[i], label, suffix, json.loads(body))
                finally:
                    await connection.close()

            asyncio.run(drive("bench-warm", 1))
            seen: list[dict[str, Any]] = []
            ready = threading.Event()
            end = f"bench-end-{uuid.uuid4().hex}"
            thread = threading.Thread(target=_monitor, args=(redis_server.port, seen, ready, end), daemon=True)
            thread.start()
            ready.wait(5)

            asyncio.run(drive("bench-b", calls))
            marker.echo(end)
            thread.join(10)
        finally:
            weft.stop()
    counts: dict[str, int] = {}
    label = None
    for command in seen:
        text = command["command"]
        if text.startswith("ECHO bench-step "):
            label = text[len("ECHO bench-step ") :]
            counts[label] = 0
        elif label and command.get("client_type") != "lua" and not text.startswith("ECHO"):
            counts[label] += 1
    return {label: counts.get(label, 0) / calls for label, _ in steps}


# ---------------------------------------------------------------- (c) bytes per cart


def product_names() -> list[tuple[str, str, Decimal]]:
    """(id, name, price) of every purchasable product: the real catalog when present, and the demo store."""
    products = [p for s in load_catalog(None).stores.values() for p in s.products if p.price is not None]
    if SHARED_CATALOG.is_file():
        store = load_products_file(SHARED_CATALOG, store_id="nitzat-haduvdevan")
        products += [p for p in store.products if p.price is not None]
    return [(p.id, p.name, p.price) for p in products if p.price is not None]


def fill_carts(client: redis.Redis, carts: int, lines: int, products: list[tuple[str, str, Decimal]]) -> None:
    """``carts`` carts of ``lines`` lines through the service's own add script (EVALSHA), pipelined."""
    sha = client.script_load(CartStore.ADD_SCRIPT)
    rng = random.Random(7)
    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    for index in range(carts):
        key = cart_key("weft", f"conv-{uuid.UUID(int=rng.getrandbits(128))}")  # a 41-character conversation id
        for product_id, name, price in rng.sample(products, lines):
            tail = line_value_tail(name, price)  # KEYS: the cart twice (no idempotency record); ARGV ends '', 0
            pipe.evalsha(sha, 2, key, key, product_id, rng.randint(1, 3), tail, 99, 100, 0, now, "", 0)
        if index % 500 == 499:
            pipe.execute()
    pipe.execute()


@dataclass(frozen=True, slots=True)
class CartBytes:
    config: str
    memory_usage_median: float
    used_memory_per_cart: float
    encodings: dict[str, int]


def bytes_per_cart(carts: int, shipped: bool) -> CartBytes:
    products = product_names()
    with bench_redis(shipped=shipped) as redis_server:
        client = redis_server.client()
        before = int(client.info("memory")["used_memory"])
        fill_carts(client, carts, 3, products)
        after = int(client.info("memory")["used_memory"])
        sample = [client.randomkey() for _ in range(min(1000, carts))]
        usage = [int(client.memory_usage(key, samples=0)) for key in sample]
        encodings: dict[str, int] = {}
        for key in sample:
            encoding = client.object("encoding", key)
            encodings[encoding] = encodings.get(encoding, 0) + 1
        client.close()
        return CartBytes(redis_config(shipped)[1], median(usage), (after - before) / carts, encodings)


def longest_line_value(products: list[tuple[str, str, Decimal]]) -> int:
    return max(len(('{"q":99,' + line_value_tail(name, price)).encode()) for _, name, price in products)


# ---------------------------------------------------------------- (d) counting under load


PROBE = r"""
import json, sys, time, redis
client = redis.Redis(port=int(sys.argv[1]))
client.hset("weft-probe", "f", "v")
end = time.time() + float(sys.argv[2])
samples = []
while time.time() < end:
    t0 = time.perf_counter(); client.hget("weft-probe", "f"); samples.append((time.time(), time.perf_counter() - t0))
    time.sleep(0.0005)
print(json.dumps(samples))
"""


def load_keys(client: redis.Redis, start: int, stop: int) -> None:
    """Minimal one-line carts (counting does not depend on their size), pipelined HSETs."""
    pipe = client.pipeline(transaction=False)
    value = '{"q":1,"n":"x","p":"1.00"}'
    for index in range(start, stop):
        pipe.hset(cart_key("weft", f"count-{index}"), mapping={"demo:i1": value, "_last_accessed": 1})
        if index % 5000 == 4999:
            pipe.execute()
    pipe.execute()


@dataclass(frozen=True, slots=True)
class CountResult:
    keys: int
    counted: int
    seconds: float
    scan_calls: int
    probe_p99_ms: float
    probe_max_ms: float
    probe_idle_p99_ms: float


async def _count(url: str) -> int:
    store = CartStore.connect(url)
    try:
        return await store.count_carts()
    finally:
        await store.aclose()


def _favoured() -> None:
    try:
        os.nice(-10)
    except PermissionError:  # not root: the probe's figure then includes some scheduling delay
        pass


def count_under_load(sizes: list[int]) -> list[CountResult]:
    """Redis on CPU 0, the counting client on CPU 1, a probe client timing HGETs before and during the sweep."""
    results = []
    with bench_redis(shipped=True, cpu=0) as redis_server:
        client = redis_server.client()
        loaded = 0
        pin(0, 1)
        for size in sizes:
            load_keys(client, loaded, size)
            loaded = size
            scans = int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))
            # The probe gets a CPU slice as soon as it wakes (nice -10), so its figure is the wait Redis
            # causes, not the bench's own CPU contention on a two-CPU machine.
            probe = subprocess.Popen(
                [sys.executable, "-c", PROBE, str(redis_server.port), str(3.0 + size / 250_000)],
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=_favoured,
            )
            try:
                time.sleep(0.7)  # probe samples of the idle server
                t0 = time.time()
                counted = asyncio.run(_count(redis_server.url))
                t1 = time.time()
                out, _ = probe.communicate(timeout=60)
            finally:
                if probe.poll() is None:
                    probe.kill()
                    probe.wait()
            scans = int(client.info("commandstats")["cmdstat_scan"]["calls"]) - scans
            samples = json.loads(out)
            during = [lat for ts, lat in samples if t0 <= ts <= t1]
            idle = [lat for ts, lat in samples if ts < t0]
            results.append(
                CountResult(
                    keys=size,
                    counted=counted,
                    seconds=t1 - t0,
                    scan_calls=scans,
                    probe_p99_ms=percentile(during, 0.99) * 1000,
                    probe_max_ms=max(during, default=0) * 1000,
                    probe_idle_p99_ms=percentile(idle, 0.99) * 1000,
                )
            )
        client.close()
    unpin()
    return results
