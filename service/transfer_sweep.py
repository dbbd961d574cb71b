"""The per-worker job that finishes stalled cart transfers: claims a worker died in, or Redis failed under.

Every worker runs it; a lease in Redis (``<prefix>:xfer-sweep``, SET NX EX 60) lets one of them sweep per
minute. Outboxes exist only while a claim runs, so a sweep is a SCAN that finds (almost) nothing; one
found older than ``STALLED_AFTER_SECONDS`` is finished as its claim would have finished it.
"""

from __future__ import annotations

import logging
import os
import random
import socket

import anyio

from service.cart_transfers import CartTransfers, Refresh
from service.carts import CartStorageError

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 60.0


def worker_name() -> str:
    """Who holds the lease, for an operator reading ``<prefix>:xfer-sweep``: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def sweep_forever(
    transfers: CartTransfers, refresh: Refresh, *, interval: float | None = None, holder: str | None = None
) -> None:
    """Try the sweep every ``interval`` seconds (``SWEEP_INTERVAL_SECONDS``; the first after a random part of
    it, so workers started together do not all ask at once) until cancelled. A failure is logged and the next
    minute tries again."""
    interval = SWEEP_INTERVAL_SECONDS if interval is None else interval
    holder = holder or worker_name()
    await anyio.sleep(random.uniform(0, interval))
    while True:
        try:
            report = await transfers.sweep(refresh=refresh, holder=holder, lease_seconds=interval)
            if report is not None and (report.failed or report.damaged):
                logger.warning(
                    "Transfer sweep: %d stalled transfer(s) not finished now, %d unreadable outbox(es): %s",
                    report.failed,
                    len(report.damaged),
                    ", ".join(report.damaged[:5]),
                )
        except CartStorageError as exc:
            logger.info("Transfer sweep skipped: cart storage failed (%s)", exc.kind)
        except Exception:  # the job must outlive any one failure; the log has the traceback
            logger.exception("Transfer sweep failed")
        await anyio.sleep(interval)
