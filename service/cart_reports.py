"""What ``CartStore``'s operator reads return: plain records, formatted by ``service.cart_admin``.

A key of the cart shape that is not a readable cart (another type of value, an unreadable
``_last_accessed``, or any unreadable line: ``service.carts.parse_line``) is *damaged*: a sweep skips it
and notes it here, never deletes it by age, and never stops on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DAMAGED_KEYS_LISTED = 100  # a report names at most this many damaged keys; the count is always whole


@dataclass(frozen=True, slots=True)
class KeyState:
    """One scanned key as the store saw it: a cart (lines, stamp), damaged (why), or gone since SCAN."""

    key: str
    lines: int = 0
    last_accessed: int | None = None
    damage: str | None = None

    @property
    def gone(self) -> bool:
        return self.damage is None and self.lines == 0 and self.last_accessed is None


@dataclass(slots=True)
class DamageReport:
    """Damaged keys met by a sweep: all counted, the first ``MAX_DAMAGED_KEYS_LISTED`` named with the reason."""

    damaged: int = 0
    damaged_keys: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def note(self, state: KeyState) -> None:
        self.damaged += 1
        if len(self.damaged_keys) < MAX_DAMAGED_KEYS_LISTED:
            self.damaged_keys.append(state.key)
            self.reasons[state.key] = state.damage or "damaged"


@dataclass(frozen=True, slots=True)
class CartSummary:
    key: str
    session_key: str
    lines: int
    last_accessed: int | None
    idle_seconds: int | None


@dataclass(slots=True)
class CartListing:
    """The first carts a sweep found, and the damaged keys it skipped on the way."""

    carts: list[CartSummary] = field(default_factory=list)
    damage: DamageReport = field(default_factory=DamageReport)


@dataclass(slots=True)
class CountReport:
    carts: int = 0
    damage: DamageReport = field(default_factory=DamageReport)


@dataclass(slots=True)
class CartDetail:
    session_key: str
    key: str
    exists: bool
    ttl_seconds: int | None = None  # None: no expiry
    last_accessed: int | None = None
    idle_seconds: int | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    damaged: str | None = None  # why the key is not a readable cart


@dataclass(slots=True)
class PurgeReport:
    older_than_seconds: int
    scanned: int = 0
    idle: int = 0
    deleted: int = 0
    dry_run: bool = False
    damage: DamageReport = field(default_factory=DamageReport)  # skipped: neither deleted nor counted idle
