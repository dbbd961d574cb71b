"""``weft-mcp serve``'s up-front catalog check, done where its memory is given back afterwards.

With one worker the check loads the catalog in the serving process itself, which then keeps it
(``load_catalog`` is cached per process). With several, the supervisor only supervises: loading
the catalog there would keep a full copy alive for nothing (hundreds of MB for a big store), so
the check runs in a short-lived child process, whose log lines and errors reach the same stderr.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from service.catalog import CatalogError, load_catalog
from service.logs import LogFormat, configure_logging


def check_catalog(stores_dir: Path | None, workers: int, log_level: str, log_format: LogFormat) -> None:
    """Raise ``CatalogError`` (one line) when no store can be served; with ``workers > 1`` keep nothing loaded."""
    if workers <= 1:
        load_catalog(stores_dir)
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the parent's heap is shared
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            pool.submit(_load_and_forget, stores_dir, log_level, log_format).result()
        except BrokenProcessPool as exc:
            raise CatalogError(f"the catalog check's process died before it finished ({exc})") from exc


def _load_and_forget(stores_dir: Path | None, log_level: str, log_format: LogFormat) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload request is for the server, not for this check
    configure_logging(log_level, log_format)
    load_catalog(stores_dir)
