"""``weft-mcp sessions ...``: the operator's view of the carts in Redis (count, list, show, purge).

Everything goes through ``CartStore``: its key layout and its one SCAN loop
(``scan_cart_keys``: SCAN, never KEYS, and on a cluster every primary), so the operator sees
exactly the keys the service writes. Work on many keys is batched: one pipeline per SCAN batch
(HLEN/HGET for listing, a conditional delete script for purging), not a round trip per key.
Reading never changes a cart: no ``_last_accessed`` stamp, no TTL refresh.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from service.carts import LAST_ACCESSED_FIELD, CartStore, parse_line
from service.sessions import session_key

BATCH = 1000  # keys per pipeline: the SCAN COUNT the store uses
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


@dataclass(slots=True)
class PurgeReport:
    older_than_seconds: int
    scanned: int = 0
    idle: int = 0
    deleted: int = 0
    dry_run: bool = False


class SessionsAdmin:
    """The operator commands over one ``CartStore``."""

    def __init__(self, store: CartStore, *, now: float | None = None) -> None:
        self.store = store
        self.now = int(now if now is not None else time.time())

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

    async def count(self, progress: Progress | None = None) -> int:
        total = 0
        async for batch in self.batches():
            total += len(batch)
            if progress:
                progress.update(total)
        if progress:
            progress.update(total, final=True)
        return total

    async def list(self, limit: int) -> list[CartSummary]:
        """The first ``limit`` carts SCAN finds (SCAN has no order), with line counts and idle ages."""
        found: list[CartSummary] = []
        async for batch in self.batches():
            batch = batch[: limit - len(found)]
            pipe = self.store.client.pipeline(transaction=False)
            for key in batch:
                pipe.hlen(key)
                pipe.hget(key, LAST_ACCESSED_FIELD)
            replies = await pipe.execute()
            for index, key in enumerate(batch):
                length, stamp = replies[2 * index], replies[2 * index + 1]
                if not length:  # deleted since SCAN saw it
                    continue
                last = int(stamp) if stamp is not None else None
                lines = int(length) - (1 if stamp is not None else 0)
                idle = None if last is None else max(0, self.now - last)
                found.append(CartSummary(key, self.session_key_of(key), lines, last, idle))
            if len(found) >= limit:
                break
        return found

    async def show(self, session_id: str) -> CartDetail:
        """One cart by the conversation id as the client sent it (hashed ids are found too)."""
        part = session_key(session_id)
        key = self.store.cart_key(part)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.ttl(key)
        fields, ttl = await pipe.execute()
        detail = CartDetail(session_id=session_id, session_key=part, key=key, exists=bool(fields))
        if not fields:
            return detail
        detail.ttl_seconds = int(ttl) if int(ttl) >= 0 else None
        for name, value in sorted(fields.items()):
            if name == LAST_ACCESSED_FIELD:
                detail.last_accessed = int(value)
                detail.idle_seconds = max(0, self.now - int(value))
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
        async for batch in self.batches():
            report.scanned += len(batch)
            pipe = self.store.client.pipeline(transaction=False)
            for key in batch:
                pipe.hget(key, LAST_ACCESSED_FIELD)
            stamps = await pipe.execute()
            idle = [key for key, stamp in zip(batch, stamps, strict=True) if stamp is not None and int(stamp) < cutoff]
            report.idle += len(idle)
            if idle and not dry_run:
                pipe = self.store.client.pipeline(transaction=False)
                for key in idle:  # EVAL, not EVALSHA: a cluster pipeline cannot load scripts first
                    pipe.eval(PURGE_IF_IDLE_SCRIPT, 1, key, cutoff)
                report.deleted += sum(int(n) for n in await pipe.execute())
            if progress:
                progress.update(report.scanned, None if dry_run else report.deleted)
        if progress:
            progress.update(report.scanned, None if dry_run else report.deleted, final=True)
        return report


def as_json(value: Any) -> str:
    if isinstance(value, list):
        value = [asdict(item) if hasattr(item, "__dataclass_fields__") else item for item in value]
    elif hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return json.dumps(value, ensure_ascii=False, indent=2)
