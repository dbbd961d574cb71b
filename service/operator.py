"""``weft-mcp sessions ...``: the operator's view of the carts in Redis (count, list, show, purge).

Everything goes through ``CartStore``: its key layout and its one SCAN loop
(``scan_cart_keys``: SCAN, never KEYS, and on a cluster every primary), so the operator sees
exactly the keys the service writes. Work on many keys is batched: one pipeline per SCAN batch
(HLEN/HGET for listing, a conditional delete script for purging), not a round trip per key.
Reading never changes a cart: no ``_last_accessed`` stamp, no TTL refresh.

A key of the cart shape that is not a readable cart (another type of value, or an unreadable
``_last_accessed``) is *damaged*: every sweep skips it and reports it, never stops on it, and
``purge <id>`` removes it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from redis.exceptions import ResponseError

from service.carts import LAST_ACCESSED_FIELD, CartStore, parse_line, parse_stamp
from service.sessions import session_key

BATCH = 1000  # keys per pipeline: the SCAN COUNT the store uses
MAX_DAMAGED_KEYS_LISTED = 100  # a report names at most this many damaged keys; the count is always whole
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Delete a cart only if it is still idle: a chat that came back between the check and the
# delete keeps its cart. KEYS[1] cart; ARGV[1] cutoff (Unix seconds). Returns 1 if deleted.
PURGE_IF_IDLE_SCRIPT = """
local last = tonumber(redis.call('HGET', KEYS[1], '_last_accessed'))
if last and last < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""


def parse_age(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds -> seconds."""
    match = _AGE.match(text)
    if not match or int(match[1]) <= 0:
        raise ValueError(f"not an age: {text!r}; write a positive number with s, m, h, d or w (for example 7d)")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def format_age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Progress:
    """Progress of a long sweep on stderr: a redrawn line on a terminal, else a line every ``every`` keys."""

    def __init__(self, label: str, *, stream: TextIO | None = None, every: int = 100_000) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._next_line = every

    def update(self, scanned: int, done: int | None = None, *, final: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        extra = "" if done is None else f", {done} deleted"
        text = f"{self.label}: {scanned} keys scanned{extra} ({elapsed:.1f} s)"
        if self.tty:
            if final or elapsed - self._last_draw >= 0.2:
                self._last_draw = elapsed
                self.stream.write("\r" + text + ("\n" if final else ""))
                self.stream.flush()
        elif final or scanned >= self._next_line:
            while self._next_line <= scanned:
                self._next_line += self.every
            self.stream.write(text + "\n")
            self.stream.flush()


@dataclass(frozen=True, slots=True)
class CartSummary:
    key: str
    session_key: str
    lines: int
    last_accessed: int | None
    idle_seconds: int | None


@dataclass(frozen=True, slots=True)
class KeyState:
    """One scanned key as a pipeline saw it: a cart (lines, stamp), damaged (why), or gone since SCAN."""

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


@dataclass(slots=True)
class CountReport:
    carts: int = 0
    damaged: int = 0
    damaged_keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CartDetail:
    session_id: str
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
    damaged: int = 0  # skipped: neither deleted nor counted idle
    damaged_keys: list[str] = field(default_factory=list)


class SessionsAdmin:
    """The operator commands over one ``CartStore``."""

    def __init__(self, store: CartStore, *, now: float | None = None) -> None:
        self.store = store
        self.now = int(now if now is not None else time.time())
        self.last_damage = DamageReport()  # damaged keys the last sweep skipped

    def session_key_of(self, cart_key: str) -> str:
        """``weft:cart:{abc}`` -> ``abc`` (what the braces hold is the session's key part)."""
        head = self.store.cart_key("")[:-1]  # "<prefix>:cart:{"
        return cart_key[len(head) : -1] if cart_key.startswith(head) and cart_key.endswith("}") else cart_key

    async def batches(self, progress: Progress | None = None) -> AsyncIterator[list[str]]:
        """The store's SCAN, grouped into batches of ``BATCH`` keys for pipelining."""
        batch: list[str] = []
        async for key in self.store.scan_cart_keys():
            batch.append(key)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def inspect(self, batch: list[str]) -> list[KeyState]:
        """HLEN and the stamp of each key, one pipeline; a key of another type is damaged, not an abort."""
        pipe = self.store.client.pipeline(transaction=False)
        for key in batch:
            pipe.hlen(key)
            pipe.hget(key, LAST_ACCESSED_FIELD)
        replies = await pipe.execute(raise_on_error=False)
        states: list[KeyState] = []
        wrong_type: list[str] = []
        for index, key in enumerate(batch):
            length, stamp = replies[2 * index], replies[2 * index + 1]
            if isinstance(length, ResponseError) or isinstance(stamp, ResponseError):
                if "WRONGTYPE" not in str(length if isinstance(length, ResponseError) else stamp):
                    raise length if isinstance(length, ResponseError) else stamp  # not the key's fault
                wrong_type.append(key)
                continue
            if stamp is not None and parse_stamp(stamp) is None:
                lines = int(length) - 1
                states.append(KeyState(key, lines, None, "unreadable _last_accessed (not Unix seconds)"))
                continue
            if not length:  # deleted since SCAN saw it
                states.append(KeyState(key))
                continue
            states.append(KeyState(key, int(length) - (stamp is not None), parse_stamp(stamp)))
        if wrong_type:
            pipe = self.store.client.pipeline(transaction=False)
            for key in wrong_type:
                pipe.type(key)
            for key, kind in zip(wrong_type, await pipe.execute(raise_on_error=False), strict=True):
                states.append(KeyState(key, damage=f"not a hash but a {kind}"))
        return states

    async def count(self, progress: Progress | None = None) -> CountReport:
        report, damage, scanned = CountReport(), DamageReport(), 0
        async for batch in self.batches():
            scanned += len(batch)
            for state in await self.inspect(batch):
                if state.damage:
                    damage.note(state)
                elif not state.gone:
                    report.carts += 1
            if progress:
                progress.update(scanned)
        if progress:
            progress.update(scanned, final=True)
        self.last_damage = damage
        report.damaged, report.damaged_keys = damage.damaged, damage.damaged_keys
        return report

    async def list(self, limit: int) -> list[CartSummary]:
        """The first ``limit`` carts SCAN finds (SCAN has no order), with line counts and idle ages.

        Damaged keys met on the way are skipped and left in ``last_damage`` for the caller to report.
        """
        found: list[CartSummary] = []
        damage = DamageReport()
        async for batch in self.batches():
            for state in await self.inspect(batch):
                if state.damage:
                    damage.note(state)
                elif not state.gone and len(found) < limit:
                    last = state.last_accessed
                    idle = None if last is None else max(0, self.now - last)
                    found.append(CartSummary(state.key, self.session_key_of(state.key), state.lines, last, idle))
            if len(found) >= limit:
                break
        self.last_damage = damage
        return found

    async def show(self, session_id: str) -> CartDetail:
        """One cart by the conversation id as the client sent it (hashed ids are found too)."""
        part = session_key(session_id)
        key = self.store.cart_key(part)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.type(key)
        pipe.hgetall(key)
        pipe.ttl(key)
        kind, fields, ttl = await pipe.execute(raise_on_error=False)
        detail = CartDetail(session_id=session_id, session_key=part, key=key, exists=kind != "none")
        if kind == "none":
            return detail
        detail.ttl_seconds = int(ttl) if int(ttl) >= 0 else None
        if kind != "hash":
            detail.damaged = f"not a hash but a {kind}"
            return detail
        for name, value in sorted(fields.items()):
            if name == LAST_ACCESSED_FIELD:
                detail.last_accessed = parse_stamp(value)
                if detail.last_accessed is None:
                    detail.damaged = "unreadable _last_accessed (not Unix seconds)"
                else:
                    detail.idle_seconds = max(0, self.now - detail.last_accessed)
                continue
            line = parse_line(name, value)
            detail.lines.append(
                {"product_id": name, "quantity": line.quantity, "name": line.name, "price": f"{line.price:.2f}"}
                if line
                else {"product_id": name, "raw": value}
            )
        return detail

    async def purge(self, session_id: str) -> tuple[str, bool]:
        key = self.store.cart_key(session_key(session_id))
        return key, bool(await self.store.client.delete(key))

    async def purge_idle(
        self, older_than_seconds: int, *, dry_run: bool = False, progress: Progress | None = None
    ) -> PurgeReport:
        """Delete carts whose ``_last_accessed`` is older than the age, one pipeline per SCAN batch.

        Each delete re-checks the stamp inside Redis, so a cart used since it was read is kept.
        ``dry_run`` only counts what would go.
        """
        cutoff = self.now - older_than_seconds
        report = PurgeReport(older_than_seconds=older_than_seconds, dry_run=dry_run)
        damage = DamageReport()
        async for batch in self.batches():
            report.scanned += len(batch)
            idle = []
            for state in await self.inspect(batch):
                if state.damage:
                    damage.note(state)  # its age is unknown: skipped, never deleted by age
                elif state.last_accessed is not None and state.last_accessed < cutoff:
                    idle.append(state.key)
            report.idle += len(idle)
            if idle and not dry_run:
                pipe = self.store.client.pipeline(transaction=False)
                for key in idle:  # EVAL, not EVALSHA: a cluster pipeline cannot load scripts first
                    pipe.eval(PURGE_IF_IDLE_SCRIPT, 1, key, cutoff)
                for outcome in await pipe.execute(raise_on_error=False):
                    if isinstance(outcome, ResponseError) and "WRONGTYPE" not in str(outcome):
                        raise outcome
                    report.deleted += outcome if isinstance(outcome, int) else 0  # WRONGTYPE: replaced since
            if progress:
                progress.update(report.scanned, None if dry_run else report.deleted)
        if progress:
            progress.update(report.scanned, None if dry_run else report.deleted, final=True)
        self.last_damage = damage
        report.damaged, report.damaged_keys = damage.damaged, damage.damaged_keys
        return report


def as_json(value: Any) -> str:
    if isinstance(value, list):
        value = [asdict(item) if hasattr(item, "__dataclass_fields__") else item for item in value]
    elif hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return json.dumps(value, ensure_ascii=False, indent=2)
