"""SIGHUP never ends a worker: it reloads what can be reloaded (the tokens file, see test_auth) and logs one line.

Without authentication there is nothing to reload, yet a ``kill -HUP`` used to end a single ``weft-mcp serve``
(and its embedded carts); under ``--workers N`` uvicorn's supervisor replaced every worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness.processes import ServeProcess
from tests.jsonrpc import call_tool
from tests.test_catalog_serve import write_synthetic_store

pytestmark = pytest.mark.e2e

OATS = "demo-market:i1702"
SLOW_START_PRODUCTS = 40_000  # loading them takes long enough for a SIGHUP to land during start-up


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (uvicorn's workers, and multiprocessing's resource tracker)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.add(int(entry.name))
    return children


def wait_for_lines(server: ServeProcess, text: str, count: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while server.log_text().count(text) < count:
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.1)


def cart_quantities(server: ServeProcess, session: str) -> dict[str, int]:
    view = call_tool(server.mcp_url, "view_cart", session=session)
    return {item["id"]: item["quantity"] for item in view["structuredContent"]["items"]}


def test_sighup_to_a_single_process_keeps_it_and_its_embedded_carts() -> None:
    with ServeProcess() as server:
        assert server.process is not None
        call_tool(server.mcp_url, "add_to_cart", {"product_id": OATS, "quantity": 3}, session="kept")
        for sent in (1, 2):
            os.kill(server.process.pid, signal.SIGHUP)
            wait_for_lines(server, "SIGHUP", sent)
        time.sleep(0.3)
        assert server.is_alive()
        assert cart_quantities(server, "kept") == {OATS: 3}
        log = server.log_text()
        assert log.count("SIGHUP") == 2 and "nothing to reload" in log, log[-2000:]
        assert "Traceback" not in log


@pytest.mark.redis
def test_sighup_under_workers_reaches_every_worker_and_ends_none(redis_url: str, key_prefix: str) -> None:
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": key_prefix}
    with ServeProcess(env=env, extra_args=["--workers", "2"]) as server:
        assert server.process is not None
        supervisor = server.process.pid
        deadline = time.monotonic() + 15
        while server.log_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.log_text()[-3000:]
            time.sleep(0.1)
        workers = child_pids(supervisor)
        call_tool(server.mcp_url, "add_to_cart", {"product_id": OATS, "quantity": 2}, session="kept")

        os.kill(supervisor, signal.SIGHUP)
        wait_for_lines(server, "nothing to reload", 2)  # one line from each worker
        time.sleep(1.5)  # uvicorn's supervisor would be replacing workers by now
        assert child_pids(supervisor) == workers, server.log_text()[-3000:]

        a_worker = max(workers)  # a SIGHUP sent to one worker directly ends it no more
        os.kill(a_worker, signal.SIGHUP)
        wait_for_lines(server, "nothing to reload", 3)
        time.sleep(1.0)
        assert child_pids(supervisor) == workers and server.is_alive()
        assert cart_quantities(server, "kept") == {OATS: 2}
        log = server.log_text()
        assert "restarting processes" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.redis)])
def test_sighup_during_start_up_never_ends_it(request: pytest.FixtureRequest, tmp_path: Path, workers: int) -> None:
    """SIGHUPs every 0.1 s from 0.3 s after the process exists (the interpreter's own start-up is before that)
    until it answers: through imports, the catalog load and uvicorn's start, it starts and serves anyway."""
    env = {"WEFT_STORES_DIR": str(write_synthetic_store(tmp_path, SLOW_START_PRODUCTS))}
    if workers > 1:
        env |= {
            "WEFT_REDIS_URL": request.getfixturevalue("redis_url"),
            "WEFT_KEY_PREFIX": request.getfixturevalue("key_prefix"),
        }
    server = ServeProcess(env=env, extra_args=["--workers", str(workers)], startup_timeout=90)
    started, sent = threading.Event(), []

    def hang_up_until_started() -> None:
        born: float | None = None
        while not started.is_set():
            process = server.process
            if process is not None and born is None:
                born = time.monotonic()
            if process is not None and process.poll() is None and time.monotonic() - (born or 0) >= 0.3:
                os.kill(process.pid, signal.SIGHUP)
                sent.append(time.monotonic())
            time.sleep(0.1)

    sender = threading.Thread(target=hang_up_until_started)
    sender.start()
    try:
        with server:
            started.set()
            sender.join()
            assert server.is_alive() and len(sent) >= 3, (len(sent), server.log_text()[-2000:])
            found = call_tool(server.mcp_url, "search_products", {"search": ""}, session="s")
            assert found["structuredContent"]["pagination"]["totalProducts"] == SLOW_START_PRODUCTS
            assert "Traceback" not in server.log_text()
    finally:
        started.set()
        sender.join()
