"""(f) a big catalog served: RSS of the supervisor and each worker; (g) /healthz while hostile searches run.

Both start real ``weft-mcp serve`` processes on a synthetic store folder written to a temporary
directory (the same generator as (e)), so the figures are what an operator's ``ps`` would show.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.load import median, percentile, tool_call
from bench.procs import bench_redis, weft_server
from bench.search import hostile_queries, real_catalog, synthetic_catalog, synthetic_records
from harness.processes import HttpProcess
from service.catalog import load_catalog


def write_store(size: int, root: Path) -> Path:
    """A stores folder holding one synthetic store of ``size`` products; returns the folder."""
    source = real_catalog() or load_catalog(None)
    data = root / "synthetic" / "data"
    data.mkdir(parents=True)
    records = synthetic_records(size, source)
    (data / "products.json").write_text(json.dumps({"scrapedAt": "bench", "products": records}), encoding="utf-8")
    return root


def rss_mib(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(out) / 1024 if out else float("nan")


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def worker_pids(server: HttpProcess) -> list[int]:
    """uvicorn's worker processes (children running Python that are not multiprocessing's helpers)."""
    assert server.process is not None
    found = []
    for pid in children(server.process.pid):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"resource_tracker" not in command:
            found.append(pid)
    return found


@dataclass(frozen=True, slots=True)
class MemoryResult:
    products: int
    file_mib: float
    workers: int
    supervisor_mib: float
    worker_mib: float  # the largest worker
    empty_worker_mib: float  # the same server with the bundled demo store


def serve_memory(size: int, workers: int, redis_url: str) -> MemoryResult:
    root = Path(tempfile.mkdtemp(prefix="weft-bench-store-"))
    try:
        stores = write_store(size, root)
        file_mib = (stores / "synthetic" / "data" / "products.json").stat().st_size / 2**20
        sup, worker = _rss_of(workers, redis_url, {"WEFT_STORES_DIR": str(stores)})
        _, empty = _rss_of(workers, redis_url, {})
        return MemoryResult(size, file_mib, workers, sup, worker, empty)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _rss_of(workers: int, redis_url: str, env: dict[str, str]) -> tuple[float, float]:
    settings = {"WEFT_WORKERS": str(workers), "WEFT_LOG_LEVEL": "WARNING", **env}
    server = weft_server(redis_url, extra_env=settings, startup_timeout=300).start()
    try:
        assert server.process is not None
        deadline = time.monotonic() + 300
        while len(worker_pids(server)) < (workers if workers > 1 else 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        _wait_all_ready(server, workers)
        supervisor = rss_mib(server.process.pid)
        worker = max([rss_mib(pid) for pid in worker_pids(server)], default=supervisor) if workers > 1 else supervisor
        return supervisor, worker
    finally:
        server.stop()


def _wait_all_ready(server: HttpProcess, workers: int) -> None:
    """Every process has finished loading: its RSS stopped growing (two readings 1 s apart within 1 %)."""
    assert server.process is not None
    pids = [server.process.pid, *(worker_pids(server) if workers > 1 else [])]
    before = [rss_mib(pid) for pid in pids]
    for _ in range(300):
        time.sleep(1.0)
        now = [rss_mib(pid) for pid in pids]
        if all(abs(a - b) <= 0.01 * b for a, b in zip(now, before, strict=True)):
            return
        before = now


@dataclass(frozen=True, slots=True)
class HealthResult:
    shape: str
    products: int
    hostile: int
    searches_seconds: float
    searches_ok: int
    healthz_median_ms: float
    healthz_p99_ms: float
    healthz_max_ms: float
    idle_max_ms: float


def hostile_shapes(queries: list[str], concurrent: int) -> list[tuple[str, int, list[dict[str, object]]]]:
    """(label, clients at once, the calls each client cycles through): broad, repeated and deep-paged searches."""
    broad = queries[2]  # as many different broad words as a query may have
    two = " ".join(broad.split()[:2])
    return [
        (f"{concurrent} hostile queries at once", concurrent, [{"search": q} for q in queries]),
        ("1 broad search repeated", 1, [{"search": broad}] * 6),
        (f"{concurrent} x page 80 of 2 broad words", concurrent, [{"search": two, "page": 80}] * 3),
        (f"{concurrent} x page 8000 (refused)", concurrent, [{"search": two, "page": 8000}] * 3),
    ]


def healthz_during_hostile(size: int, concurrent: int, redis_url: str) -> list[HealthResult]:
    """For each shape of hostile search_products calls (repeated by each client) /healthz is probed meanwhile."""
    root = Path(tempfile.mkdtemp(prefix="weft-bench-store-"))
    server = None
    try:
        stores = write_store(size, root)
        settings = {"WEFT_STORES_DIR": str(stores), "WEFT_LOG_LEVEL": "WARNING"}
        server = weft_server(redis_url, extra_env=settings, startup_timeout=300).start()
        queries = hostile_queries(synthetic_catalog(min(size, 2000), real_catalog() or load_catalog(None)))
        return [
            asyncio.run(_probe(server, shape, calls, clients, size))
            for shape, clients, calls in hostile_shapes(queries, concurrent)
        ]
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _probe(
    server: HttpProcess, shape: str, calls: list[dict[str, object]], concurrent: int, size: int
) -> HealthResult:
    async with httpx.AsyncClient(timeout=120) as client:
        idle = [await _healthz(client, server) for _ in range(20)]
        stop = asyncio.Event()
        probes: list[float] = []
        done = [0, 0]

        async def probe() -> None:
            while not stop.is_set():
                probes.append(await _healthz(client, server))
                await asyncio.sleep(0.01)

        async def hostile(index: int) -> None:
            for round_ in range(len(calls)):
                arguments = calls[(index + round_) % len(calls)]
                message = tool_call("search_products", arguments, f"hostile-{index}")
                response = await client.post(
                    server.mcp_url, json=message, headers={"Accept": "application/json, text/event-stream"}
                )
                done[0] += 1
                done[1] += response.status_code == 200

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        await asyncio.gather(*(hostile(i) for i in range(concurrent)))
        seconds = time.perf_counter() - started
        stop.set()
        await prober
    return HealthResult(
        shape,
        size,
        done[0],
        seconds,
        done[1],
        median(probes) * 1000,
        percentile(probes, 0.99) * 1000,
        max(probes) * 1000,
        max(idle) * 1000,
    )


async def _healthz(client: httpx.AsyncClient, server: HttpProcess) -> float:
    started = time.perf_counter()
    (await client.get(f"{server.url}/healthz")).raise_for_status()
    return time.perf_counter() - started


def run_memory(sizes: tuple[int, ...]) -> list[MemoryResult]:
    with bench_redis(cpu=0) as redis_server:
        return [serve_memory(size, workers, redis_server.url) for size in sizes for workers in (1, 2)]


def run_health(size: int, concurrent: int) -> list[HealthResult]:
    with bench_redis(cpu=0) as redis_server:
        return healthz_during_hostile(size, concurrent, redis_server.url)
