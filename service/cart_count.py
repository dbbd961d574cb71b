"""One cart count per worker for a few seconds: ``debug_session`` must not SCAN the keyspace per call.

A SCAN sweep over 300k carts takes about a quarter of a second of Redis time; a burst of debug
calls would repeat it for each. Here concurrent callers share one sweep in flight (single
flight), and its result serves every call for ``max_age_seconds``; the answer says when it was
counted. A failed sweep is not kept: the next caller tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

COUNT_MAX_AGE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CartCount:
    carts: int
    counted_at: datetime  # wall clock, for the answer
    counted_monotonic: float  # for the age

    def age_seconds(self, now: float) -> float:
        return max(0.0, now - self.counted_monotonic)


class CartCounter:
    """Caches ``count()``'s result; at most one count runs at a time."""

    def __init__(
        self,
        count: Callable[[], Awaitable[int]],
        *,
        max_age_seconds: float = COUNT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._last: CartCount | None = None
        self._in_flight: asyncio.Future[CartCount] | None = None

    async def get(self) -> CartCount:
        last = self._last
        if last is not None and last.age_seconds(self.clock()) < self.max_age_seconds:
            return last
        if self._in_flight is None:
            self._in_flight = asyncio.ensure_future(self._recount())
            self._in_flight.add_done_callback(self._landed)
        # shield: a caller that gives up (its request cancelled) does not cancel the others' count
        return await asyncio.shield(self._in_flight)

    async def _recount(self) -> CartCount:
        carts = await self._count()
        return CartCount(carts=carts, counted_at=datetime.now(UTC), counted_monotonic=self.clock())

    def _landed(self, future: asyncio.Future[CartCount]) -> None:
        self._in_flight = None
        if not future.cancelled() and future.exception() is None:
            self._last = future.result()
