"""Graceful shutdown with a drain phase: on SIGTERM, ``/readyz`` turns 503 before the server stops.

uvicorn closes its listening socket as soon as SIGTERM arrives, so a load balancer that polls
``/readyz`` would learn of the stop only from refused connections. ``Drain`` wraps uvicorn's
own SIGTERM handler: the first SIGTERM only marks the worker as draining (``/readyz`` says 503,
everything else is still served) and hands the signal on to uvicorn after
``WEFT_SHUTDOWN_DRAIN_SECONDS``; uvicorn then stops as usual: no new connections, in-flight
requests finish (up to its graceful timeout), the lifespan closes the Redis pool.

It is installed from the lifespan, i.e. inside uvicorn's ``capture_signals``, in every worker
process. Under ``--workers N`` the supervisor forwards its SIGTERM to each worker, and each
drains like a single process does. A second SIGTERM, or SIGINT, stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)


class Drain:
    """Whether this worker is draining, and the SIGTERM handler that starts the drain."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._previous: Any = None

    def install(self) -> Callable[[], None]:
        """Wrap the current SIGTERM handler (uvicorn's); returns the undo. No-op off the main thread."""
        if self.seconds <= 0:
            return lambda: None
        loop = asyncio.get_running_loop()
        try:
            self._previous = signal.signal(signal.SIGTERM, lambda sig, frame: self._on_term(loop, sig, frame))
        except ValueError:  # not the main thread (an in-process test server)
            return lambda: None
        previous = self._previous

        def undo() -> None:
            signal.signal(signal.SIGTERM, previous)

        return undo

    def _on_term(self, loop: asyncio.AbstractEventLoop, sig: int, frame: FrameType | None) -> None:
        if self.draining:  # a second SIGTERM: stop now
            self._hand_on(sig, frame)
            return
        self.draining = True
        logger.info("SIGTERM: draining for %g s (/readyz answers 503), then stopping", self.seconds)
        loop.call_soon_threadsafe(loop.call_later, self.seconds, self._hand_on, sig, frame)

    def _hand_on(self, sig: int, frame: FrameType | None) -> None:
        if callable(self._previous):
            self._previous(sig, frame)
        else:  # no Python handler before ours: behave as the default would
            signal.raise_signal(sig)
