"""What went wrong with a cart storage call, and whether the command may have run.

redis-py's exception types are about the wire; an operator and a shopper need the reason
(authentication, permission, full, damaged, timeout, unreachable) and one fact: whether a
change may have been applied. Only a command that was sent and got no answer may have run.
An error reply means Redis refused it before changing anything: the cart scripts make every
write after their first one unable to fail (``redis.pcall``), and Redis refuses a script's
first write under ``maxmemory`` (DESIGN.md, Redis layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class Fault(StrEnum):
    AUTHENTICATION = "authentication"  # wrong or missing password / ACL user
    PERMISSION = "permission"  # the ACL user may not run a command or touch a key
    FULL = "full"  # maxmemory reached with noeviction: writes refused, reads work
    DAMAGED = "damaged"  # a key of the cart shape that is not a cart (WRONGTYPE)
    TIMEOUT = "timeout"  # sent, no answer in time
    UNREACHABLE = "unreachable"  # no connection, or it dropped
    FAILED = "failed"  # any other error reply


# Conditions of the whole store (every worker shares one Redis); DAMAGED is one cart's.
STORE_CONDITIONS = (
    "ok",
    Fault.FULL,
    Fault.AUTHENTICATION,
    Fault.PERMISSION,
    Fault.TIMEOUT,
    Fault.UNREACHABLE,
    Fault.FAILED,
)

REASONS = {
    Fault.AUTHENTICATION: "Redis refused the credentials in WEFT_REDIS_URL (authentication)",
    Fault.PERMISSION: "Redis' ACL does not let this user run the cart scripts on the cart keys (permission)",
    Fault.FULL: "Redis is out of memory (maxmemory reached): writes are refused, reads still work",
    Fault.DAMAGED: "a key of the cart shape holds another type of value (damaged)",
    Fault.TIMEOUT: "Redis did not answer in time (timeout)",
    Fault.UNREACHABLE: "Redis cannot be reached (connection refused, closed or not yet open)",
    Fault.FAILED: "Redis answered with an error",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    fault: Fault
    maybe_applied: bool

    @property
    def reason(self) -> str:
        return REASONS[self.fault]


def diagnose(exc: RedisError) -> Diagnosis:
    """The fault behind a redis-py error, and whether the command may have run."""
    text = str(exc)
    if isinstance(exc, AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        return Diagnosis(Fault.AUTHENTICATION, maybe_applied=False)
    if isinstance(exc, NoPermissionError) or text.startswith("NOPERM") or _script_denied(text):
        return Diagnosis(Fault.PERMISSION, maybe_applied=False)
    if isinstance(exc, OutOfMemoryError) or text.startswith("OOM"):
        return Diagnosis(Fault.FULL, maybe_applied=False)
    if isinstance(exc, ResponseError):
        return Diagnosis(Fault.DAMAGED if text.startswith("WRONGTYPE") else Fault.FAILED, maybe_applied=False)
    if isinstance(exc, BusyLoadingError):  # "LOADING": refused before running
        return Diagnosis(Fault.UNREACHABLE, maybe_applied=False)
    if isinstance(exc, RedisTimeoutError):  # "Timeout connecting to server" sent nothing
        return Diagnosis(Fault.TIMEOUT, maybe_applied=not _while_connecting(text))
    if isinstance(exc, RedisConnectionError):
        return Diagnosis(Fault.UNREACHABLE, maybe_applied=not _while_connecting(text))
    return Diagnosis(Fault.FAILED, maybe_applied=True)  # unknown: err on the safe side


def _while_connecting(text: str) -> bool:
    """redis-py's words for a failed connect ("Error 111 connecting to ...", "Timeout connecting to server",
    Sentinel's "No master found"): no command reached Redis."""
    return "connecting" in text or text.startswith("No master found")


def _script_denied(text: str) -> bool:
    """ACL denials inside a script come as plain errors (Redis 7.0: "The user executing the script can't run
    this command ..."; 7.2 and later: "... no permissions ...")."""
    return "The user executing the script can't" in text or "has no permissions to" in text
