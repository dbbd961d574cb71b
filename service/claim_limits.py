"""Failed transfer-code claims, counted in Redis so every worker shares the count: per caller and in total.

A transfer code has about 34.5 bits: what makes guessing one hopeless is that wrong guesses are few.
Two fixed-window counters (``WEFT_CLAIM_FAILURE_WINDOW_SECONDS``, from the first failure of the window):

- ``<prefix>:claim-failures:{caller-<16 hex of SHA-256(caller)>}``: one caller (the signed-in subject,
  else the client address), so one guesser cannot lock everyone out quickly;
- ``<prefix>:claim-failures:{all}``: the whole deployment, the bound behind README's guessing odds
  (many addresses guessing together still get at most this many tries per window).

A claim by code reads both (in the pipeline that looks the code up) and is refused while either has
reached its limit; a wrong, used or expired code adds one to both. A code of the wrong shape never
reaches Redis and is not counted. Checking before counting lets a burst of concurrent guesses pass the
limit by at most the guesses in flight, one each; the bound on guesses per window stays linear.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

CALLER_TAG_DIGITS = 16


class ClaimRateLimited(ValueError):
    """Too many failed claims in the window; nothing was looked up or written."""

    def __init__(self, minutes: int) -> None:
        super().__init__(f"Too many failed transfer-code claims; try again in {minutes} minute{'s' * (minutes != 1)}.")
        self.minutes = minutes


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """The limits and the key names of their counters; the caller runs the commands in its own pipeline."""

    key_prefix: str
    per_caller: int = 10
    total: int = 100
    window_seconds: int = 3600

    def __post_init__(self) -> None:
        if min(self.per_caller, self.total, self.window_seconds) < 1:
            raise ValueError("claim failure limits and their window must be at least 1")

    def caller_key(self, caller: str) -> str:
        """The caller's counter: a hash of the caller (an address or a subject is never a key in clear)."""
        tag = hashlib.sha256(caller.encode("utf-8", "surrogatepass")).hexdigest()[:CALLER_TAG_DIGITS]
        return f"{self.key_prefix}:claim-failures:{{caller-{tag}}}"

    @property
    def total_key(self) -> str:
        return f"{self.key_prefix}:claim-failures:{{all}}"

    def queue_check(self, pipe: Any, caller: str) -> None:
        """Four replies: the caller's count and TTL, the deployment's count and TTL (``refusal`` reads them)."""
        for key in (self.caller_key(caller), self.total_key):
            pipe.get(key)
            pipe.ttl(key)

    def refusal(self, replies: list[Any]) -> ClaimRateLimited | None:
        """What ``queue_check``'s four replies say: None, or the refusal naming the minutes until it lifts."""
        caller_count, caller_ttl, total_count, total_ttl = replies
        waits = [
            self._wait(ttl)
            for count, ttl, limit in ((caller_count, caller_ttl, self.per_caller), (total_count, total_ttl, self.total))
            if _count(count) >= limit and _expires(ttl)  # a counter without expiry is ignored, never a lockout
        ]
        return ClaimRateLimited(max(waits)) if waits else None

    def queue_failure(self, pipe: Any, caller: str) -> None:
        """Count one failed claim on both counters; the first failure of a window starts its expiry (NX)."""
        for key in (self.caller_key(caller), self.total_key):
            pipe.incr(key)
            pipe.expire(key, self.window_seconds, nx=True)

    @staticmethod
    def _wait(ttl: int) -> int:
        return max(1, math.ceil(ttl / 60))


def _expires(ttl: Any) -> bool:
    return isinstance(ttl, int) and ttl > 0


def _count(reply: Any) -> int:
    try:
        return int(reply)
    except (TypeError, ValueError):
        return 0  # absent (None) or not a number: no failures counted
