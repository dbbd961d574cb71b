"""SIGHUP never ends a worker: it reloads what can be reloaded (the tokens file) and logs one line.

Python's default action for SIGHUP ends the process, and uvicorn's single-process server leaves it
so: a ``kill -HUP`` (what the README teaches for the tokens file) used to end a server without
authentication silently, embedded carts and all. ``install_sighup_handler`` runs in every worker as
early as uvicorn lets us (``service.http_server.WeftConfig``); the app's lifespan registers what
can be reloaded with ``on_sighup``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger(__name__)

_reloaders: list[Callable[[], object]] = []


def on_sighup(reload: Callable[[], object]) -> Callable[[], None]:
    """Call ``reload`` (which logs its own one line) on SIGHUP in this process; returns the undo."""
    _reloaders.append(reload)
    return lambda: _reloaders.remove(reload) if reload in _reloaders else None


def handle_sighup(signum: int = signal.SIGHUP, frame: FrameType | None = None) -> None:
    if not _reloaders:
        logger.info("SIGHUP: nothing to reload (no WEFT_AUTH_TOKENS_FILE); still serving")
        return
    for reload in list(_reloaders):
        reload()


def install_sighup_handler() -> None:
    """Make SIGHUP reload instead of ending this process; only the main thread may set signal handlers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, handle_sighup)
