"""The per-worker sweep job (``service.transfer_sweep``): two workers' jobs, one lease, stalled claims finished."""

from __future__ import annotations

import time
from typing import Any

import anyio
import fakeredis

from service.cart_transfers import new_claim_id
from service.carts import CartStore
from service.transfer_sweep import sweep_forever, worker_name
from tests.transfer_support import catalog, connect, fill, held, in_outbox


async def test_two_workers_jobs_finish_a_stalled_claim_once_under_one_lease() -> None:
    server = fakeredis.FakeServer()
    first, second = connect("embedded", "sw", server=server), connect("embedded", "sw", server=server)
    await fill(first, "src", {"t:a": 2})
    await fill(first, "dst", {"t:a": 1})
    await first.transfers.take("src", "dst", new_claim_id(), "merge", "", "")  # the claiming worker died here
    await first.client.hset(first.transfers.outbox_key("src"), "_at", str(int(time.time()) - 60))
    swept: list[tuple[str, int]] = []  # (holder, outboxes finished) of every sweep that got the lease
    for store in (first, second):
        real_sweep = store.transfers.sweep

        async def noting(real_sweep: Any = real_sweep, **options: Any) -> Any:
            report = await real_sweep(**options)
            if report is not None:
                swept.append((options["holder"], report.finished))
            return report

        store.transfers.sweep = noting  # type: ignore[method-assign]
    async with anyio.create_task_group() as jobs:
        jobs.start_soon(lambda: sweep_forever(first.transfers, catalog(), interval=0.3, holder="w1"))
        jobs.start_soon(lambda: sweep_forever(second.transfers, catalog(), interval=0.3, holder="w2"))
        with anyio.fail_after(5):
            while await in_outbox(first, "src"):
                await anyio.sleep(0.05)
        jobs.cancel_scope.cancel()
    assert await held(first, "dst") == {"t:a": 3}
    assert sum(finished for _, finished in swept) == 1, swept
    await first.aclose()
    await second.aclose()


async def test_one_sweep_per_lease_period_whatever_the_number_of_workers() -> None:
    server = fakeredis.FakeServer()
    workers = [connect("embedded", "sw", server=server) for _ in range(4)]
    attempts, swept = 0, 0
    for store in workers:
        real_sweep = store.transfers.sweep

        async def counting(real_sweep: Any = real_sweep, **options: Any) -> Any:
            nonlocal attempts, swept
            attempts += 1
            report = await real_sweep(**options)
            swept += report is not None
            return report

        store.transfers.sweep = counting  # type: ignore[method-assign]
    interval, duration = 0.25, 1.6
    with anyio.move_on_after(duration):
        async with anyio.create_task_group() as jobs:
            for index, store in enumerate(workers):
                jobs.start_soon(
                    lambda store=store, index=index: sweep_forever(
                        store.transfers, catalog(), interval=interval, holder=f"w{index}"
                    )
                )
    print(f"\n4 workers, {duration} s, lease {interval} s: {attempts} attempts, {swept} sweeps")
    for store in workers:
        await store.aclose()
    assert attempts >= 12  # every worker kept trying
    assert swept <= duration / interval + 1  # but one sweep per lease period


async def test_the_job_outlives_a_failing_store() -> None:
    store = connect("embedded", "sw")
    await store.aclose()
    calls = 0
    real_sweep = store.transfers.sweep

    async def failing(**options: object) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom") if calls == 1 else await real_sweep(**options)  # type: ignore[arg-type]

    store.transfers.sweep = failing  # type: ignore[method-assign]
    with anyio.move_on_after(1):
        await sweep_forever(store.transfers, catalog(), interval=0.1)
    assert calls >= 3  # the failure was logged, and the job went on


def test_the_lease_holder_names_host_and_process() -> None:
    host, pid = worker_name().rsplit(":", 1)
    assert host and int(pid) > 0


async def test_a_sweep_that_cannot_reach_redis_leaves_the_storage_condition_alone() -> None:
    """The job is no tool call: its failure must not flip what /readyz and /metrics report."""
    from harness.processes import free_port
    from service.metrics import STORAGE_CONDITION, note_storage_condition

    store = CartStore.connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    note_storage_condition("ok")
    try:
        assert await store.transfers.sweep(refresh=catalog(), holder="w1") is None
        assert STORAGE_CONDITION.labels("ok")._value.get() == 1
    finally:
        await store.aclose()
