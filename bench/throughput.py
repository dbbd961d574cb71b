"""(a) add_to_cart and view_cart through one Weft worker, against the bare SDK floor, in alternating rounds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bench.load import RoundResult, median, run_round, tool_call
from bench.procs import bench_redis, noop_server, weft_server
from harness.processes import pin
from service.catalog import load_catalog

TARGETS = ("noop floor", "add_to_cart", "view_cart")
VIEW_CARTS = 64  # view_cart reads these carts, filled with three lines each before the rounds


@dataclass(frozen=True, slots=True)
class Throughput:
    target: str
    rounds: tuple[RoundResult, ...]

    @property
    def rate(self) -> float:
        return median(r.rate for r in self.rounds)

    def p(self, q: float) -> float:
        return median(r.percentile(q) for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)


def demo_products(count: int = 3) -> list[str]:
    catalog = load_catalog(None)
    return [p.id for store in catalog.stores.values() for p in store.products if p.is_purchasable][:count]


def bodies(products: list[str], round_index: int) -> dict[str, Any]:
    """Per target: (connection, sequence) -> message. Adds fill fresh 3-line carts, so no line hits its maximum."""

    def noop(c: int, i: int) -> dict[str, Any]:
        return tool_call("noop", {}, f"bench-{c}-{i % VIEW_CARTS}", i)

    def add(c: int, i: int) -> dict[str, Any]:
        session = f"bench-add-{round_index}-{c}-{i // 3}"
        return tool_call("add_to_cart", {"product_id": products[i % 3], "quantity": 1}, session, i)

    def view(c: int, i: int) -> dict[str, Any]:
        return tool_call("view_cart", {}, f"bench-view-{(c * 7 + i) % VIEW_CARTS}", i)

    return {"noop floor": noop, "add_to_cart": add, "view_cart": view}


async def _fill_view_carts(port: int, products: list[str]) -> None:
    def add(c: int, i: int) -> dict[str, Any]:
        return tool_call("add_to_cart", {"product_id": products[i % 3]}, f"bench-view-{(i // 3) % VIEW_CARTS}", i)

    await run_round(port, add, 1, 0.05 + VIEW_CARTS * 3 * 0.004)


@dataclass(frozen=True, slots=True)
class Measured:
    """(a): each target's rounds, and each server's RSS after them (MiB)."""

    targets: list[Throughput]
    weft_rss_mib: float
    floor_rss_mib: float


def measure(rounds: int, seconds: float, concurrency: int) -> Measured:
    """Weft on CPU 1 (with Redis on CPU 0 beside the load generator), the floor on CPU 1 too, never at once."""
    from bench.serving import rss_mib

    pin(0, 0)
    results: dict[str, list[RoundResult]] = {t: [] for t in TARGETS}
    rss = (float("nan"), float("nan"))
    products = demo_products()
    with bench_redis(shipped=True, cpu=0) as redis_server:
        weft, floor = weft_server(redis_server.url, cpu=1), noop_server(cpu=1)
        try:
            weft.start()
            floor.start()
            ports = {"noop floor": floor.port, "add_to_cart": weft.port, "view_cart": weft.port}
            asyncio.run(_fill_view_carts(weft.port, products))
            for round_index in range(rounds):
                messages = bodies(products, round_index)
                order = TARGETS if round_index % 2 == 0 else TARGETS[::-1]  # alternate, so drift hits both
                for target in order:
                    result = asyncio.run(
                        run_round(ports[target], messages[target], concurrency, seconds, warm_up=min(0.5, seconds / 4))
                    )
                    results[target].append(result)
            assert weft.process is not None and floor.process is not None
            rss = (rss_mib(weft.process.pid), rss_mib(floor.process.pid))  # one worker: the served process
        finally:
            weft.stop()
            floor.stop()
    return Measured([Throughput(t, tuple(results[t])) for t in TARGETS], *rss)


def profile(seconds: float, concurrency: int, targets: tuple[str, ...] = TARGETS) -> list[tuple[str, Any]]:
    """One round per target with py-spy sampling the server (``bench.profile``): where each one's CPU goes."""
    from bench.profile import Sampler

    pin(0, 0)
    products = demo_products()
    found = []
    with bench_redis(shipped=True, cpu=0) as redis_server:
        weft, floor = weft_server(redis_server.url, cpu=1), noop_server(cpu=1)
        try:
            weft.start()
            floor.start()
            servers = {"noop floor": floor, "add_to_cart": weft, "view_cart": weft}
            asyncio.run(_fill_view_carts(weft.port, products))
            messages = bodies(products, 0)
            for target in targets:
                server = servers[target]
                assert server.process is not None
                warm_up = min(0.5, seconds / 4)
                asyncio.run(run_round(server.port, messages[target], concurrency, warm_up))
                sampler = Sampler(server.process.pid, seconds)
                result = asyncio.run(run_round(server.port, messages[target], concurrency, seconds))
                found.append((f"{target} ({result.rate:.0f} calls/s while sampled)", sampler.result()))
        finally:
            weft.stop()
            floor.stop()
    return found
