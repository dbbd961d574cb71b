"""Moving a cart's lines to another cart: transfer codes (share) and claims, crash-safe and retry-safe.

Composed by ``CartStore`` (``store.transfers``); it alone writes these keys (all under ``<prefix>:``, none of
the cart shape ``<prefix>:cart:{*``, so the operator's sweeps never see them as carts):

- ``share:{<sk>}``: the keyed hash of the cart's current code (TTL: the code's), the one that counts;
- ``code:{<hash>}``: the code's hash -> the cart's session key (same TTL), how a claim finds the cart;
- ``xfer:{<sk>}``: the outbox of a claim in flight from this cart (its lines, ``_to``, ``_id``, ``_mode``,
  ``_at`` and ``_f``, the claim's fingerprint); no TTL: a claim, its retry or the sweep finishes it;
- ``idem:{<target sk>}:claim-<T>``: claim T was applied to the target (its JSON report, naming the source;
  30 days);
- ``idem:{<source sk>}:took-<T>``: claim T took this cart's lines (the target's key; 30 days), so a racer of
  a finished retry never takes lines added since under the same id;
- ``xfer-sweep``: the lease under which one worker a minute finishes stalled outboxes;
- the failed-claim counters (``service.claim_limits``).

A claim is four steps, each atomic on one slot, so source and target may sit on different primaries:
TAKE (source slot: the lines move from the cart into its outbox, the code dies), a catalog refresh in
Python, APPLY (target slot: merged once per claim id, recorded by the marker in the same script) and
FINISH (source slot: the outbox is deleted if it is still this claim's). Whatever stops a claim
between steps leaves the lines in the outbox, and whoever finishes it (the same claim retried, any
other claim of that source, the sweep) repeats APPLY, which the marker makes a no-op the second time:
no quantity doubles, no line is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import NoScriptError, RedisError

from service.carts import (
    LAST_ACCESSED_FIELD,
    SCAN_COUNT,
    Cart,
    CartStorageError,
    CartStore,
    _call,
    _parse_cart,
    _storage_error,
    line_value_tail,
    parse_line,
)
from service.claim_limits import ClaimLimits
from service.product_ids import looks_like_product_id
from service.storage_faults import Fault
from service.transfer_codes import code_hash, display, new_code, normalize

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

Mode = Literal["merge", "replace"]
MODES: tuple[Mode, ...] = ("merge", "replace")
# A line's name and current price from the catalog, or None when it cannot be bought now (gone, no price).
Refresh = Callable[[str], "tuple[str, Decimal] | None"]

CODE_TTL_SECONDS = 600
CLAIM_MARKER_TTL_SECONDS = 30 * 86400  # far longer than any outbox waits: the sweep runs every minute
STALLED_AFTER_SECONDS = 30  # an outbox this old is no claim's work in progress any more: the sweep finishes it
SWEEP_LEASE_SECONDS = 60
CLAIM_ID = re.compile(r"[0-9a-f]{32}")
OUTBOX_META = ("_to", "_id", "_mode", "_at", "_f")
SHARE_ATTEMPTS = 3  # a fresh code whose hash another cart's live code has (1 in 2.6e10 per live code): draw again
TAKE_ATTEMPTS = 4  # each pending outbox found is finished first; more than this means others keep taking it


class TransferError(ValueError):
    """A share or claim refused; the message is the one sentence for the caller. Nothing was written
    (but a failed claim by code, which counts toward the limits)."""


class EmptyCartError(TransferError):
    def __init__(self) -> None:
        super().__init__("An empty cart cannot be shared; add products to it first.")


class TransferCodeError(TransferError):
    """Wrong, used and expired codes get this one sentence alike: it tells a guesser nothing."""

    def __init__(self) -> None:
        super().__init__("That transfer code is wrong, used or expired; ask for a new one with share_cart.")


class SelfClaimError(TransferError):
    def __init__(self) -> None:
        super().__init__("A cart cannot claim itself; use the code or cart_id of another chat's cart.")


class ClaimConflict(TransferError):
    def __init__(self) -> None:
        super().__init__(
            "That idempotency key was already used for a different change; use a new key for a new change."
        )


class ClaimBusy(TransferError):
    def __init__(self) -> None:
        super().__init__("That cart is being claimed by another chat right now; try again in a moment.")


@dataclass(frozen=True, slots=True)
class Share:
    code: str  # as shown: BCDF-GHJK
    expires_at: datetime
    cart: Cart


@dataclass(frozen=True, slots=True)
class Claimed:
    cart: Cart  # the target cart after the claim
    lines: int  # source lines now in the target (capped ones included)
    capped: tuple[str, ...]  # product ids whose quantity stopped at the maximum
    skipped: tuple[str, ...]  # product ids left out: gone from the catalog, no price, unreadable, past the line limit
    replayed: bool = False  # this claim had already been applied: nothing changed now


@dataclass(slots=True)
class SweepReport:
    scanned: int = 0
    finished: int = 0
    failed: int = 0  # outboxes whose finishing failed this time (Redis, a damaged target): the next sweep retries
    damaged: list[str] = field(default_factory=list)  # outbox keys without a readable claim (left for the operator)


def new_claim_id() -> str:
    """A claim id for a call without an idempotency key: 128 random bits."""
    return secrets.token_hex(16)


def claim_id_for(idempotency_key: str) -> str:
    """The claim id of an idempotency key: a retry with the same key is the same claim."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Outbox:
    """A claim in flight, as TAKE left it in ``xfer:{source}``."""

    source: str
    target: str
    claim_id: str
    mode: str
    taken_at: int
    fingerprint: str
    lines: dict[str, str]  # product id -> stored line value

    @classmethod
    def read(cls, source: str, stored: dict[str, str]) -> _Outbox | None:
        """The outbox's fields (HGETALL) as a claim, or None when its meta is unreadable (damaged, by hand)."""
        lines = dict(stored)
        meta = {name: lines.pop(name, None) for name in OUTBOX_META}
        target, claim_id, mode, taken_at = meta["_to"], meta["_id"], meta["_mode"], meta["_at"]
        if not target or not claim_id or not CLAIM_ID.fullmatch(claim_id) or mode not in MODES:
            return None
        if taken_at is None or not taken_at.isdigit():
            return None
        return cls(source, target, claim_id, mode, int(taken_at), meta["_f"] or "", lines)


class CartTransfers:
    """Share codes and claims for one ``CartStore``; every script touches one slot only."""

    # KEYS cart, share; ARGV code hash, code ttl, cart ttl, now. The cart's first command is a hash read, so a
    # damaged cart key fails before anything is written. Returns {status, previous code hash or '', cart}.
    SHARE_SCRIPT = (
        CartStore._TOUCH
        + """
if line_count(KEYS[1]) == 0 then return {'empty', '', {}} end
local previous = redis.call('GET', KEYS[2]) or ''
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {'ok', previous, touch(KEYS[1], ARGV[4], tonumber(ARGV[3]))}
"""
    )

    # KEYS cart, outbox, share, took marker idem:{source}:took-<T> (the source's slot); ARGV claim id, target key,
    # code hash ('' = by cart key), mode, now, fingerprint, marker ttl. An outbox already there comes back as it
    # is ('pending': finish it first). A claim that took from this cart before ('taken_before': the took marker
    # names this target) takes nothing again: lines added since are not its own, and its APPLY, replayed, would
    # let FINISH drop them. Else, with a code, the share must hold its hash; then every line moves into the
    # outbox with the claim's meta, the cart and its code die, and the took marker is written; the code's hash
    # comes back (third), so that FINISH drops its mapping too. Reads come first: a key of another type fails
    # before any write.
    TAKE_SCRIPT = """
local cart, outbox, share, took = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pending = redis.call('HGETALL', outbox)
if #pending > 0 then return {'pending', pending, ''} end
if redis.call('GET', took) == ARGV[2] then return {'taken_before', {}, ''} end
local code = redis.call('GET', share) or ''
if ARGV[3] ~= '' and code ~= ARGV[3] then return {'bad_code', {}, ''} end
local fields = redis.call('HGETALL', cart)
local moved = 0
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 1) ~= '_' then
    redis.call('HSET', outbox, fields[i], fields[i + 1])
    moved = moved + 1
  end
end
redis.call('DEL', cart, share)
redis.call('SET', took, ARGV[2], 'EX', ARGV[7])
if moved == 0 then return {'taken', {}, code} end
redis.call('HSET', outbox, '_to', ARGV[2], '_id', ARGV[1], '_mode', ARGV[4], '_at', ARGV[5], '_f', ARGV[6])
return {'taken', redis.call('HGETALL', outbox), code}
"""

    # KEYS target cart, marker idem:{target}:claim-<T>; ARGV mode, max quantity, max lines, cart ttl, now,
    # marker ttl, fingerprint, source key, n, n skipped product ids, then (product id, quantity, value tail) per
    # line. The marker makes it once per claim: present -> 'replayed' with the stored report and the cart as it
    # is. The report names the source, so a replay can finish the source's outbox whatever else is gone.
    APPLY_SCRIPT = (
        CartStore._TOUCH
        + """
local cart, marker = KEYS[1], KEYS[2]
local done = redis.call('GET', marker)
if done then
  if redis.call('HLEN', cart) == 0 then return {'replayed', done, {}} end
  return {'replayed', done, touch(cart, ARGV[5], tonumber(ARGV[4]))}
end
line_count(cart)  -- a target key of another type fails here, before any write
local max_quantity, max_lines = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[1] == 'replace' then redis.call('DEL', cart) end
local capped, skipped, applied = {}, {}, 0
local given = tonumber(ARGV[9])
for i = 10, 9 + given do table.insert(skipped, ARGV[i]) end
for i = 10 + given, #ARGV, 3 do
  local id, quantity, tail = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', cart, id)
  if not current and line_count(cart) >= max_lines then
    table.insert(skipped, id)
  else
    -- an unreadable line of the same product is replaced by the claimed one: it showed nothing anyway
    local total = quantity + ((current and readable_quantity(current)) or 0)
    if total > max_quantity then
      total = max_quantity
      table.insert(capped, id)
    end
    redis.call('HSET', cart, id, '{"q":' .. total .. ',' .. tail)
    applied = applied + 1
  end
end
local function ids(list)
  local parts = {}
  for _, id in ipairs(list) do table.insert(parts, cjson.encode(id)) end
  return '[' .. table.concat(parts, ',') .. ']'
end
local report = '{"lines":' .. applied .. ',"capped":' .. ids(capped) .. ',"skipped":' .. ids(skipped)
  .. ',"f":' .. cjson.encode(ARGV[7]) .. ',"src":' .. cjson.encode(ARGV[8]) .. '}'
redis.call('SET', marker, report, 'EX', ARGV[6])
if line_count(cart) == 0 then
  redis.call('DEL', cart)
  return {'ok', report, {}}
end
return {'ok', report, touch(cart, ARGV[5], tonumber(ARGV[4]))}
"""
    )

    # KEYS outbox; ARGV claim id. Deletes the outbox only if it is still this claim's.
    FINISH_SCRIPT = """
if redis.call('HGET', KEYS[1], '_id') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

    def __init__(
        self,
        store: CartStore,
        *,
        code_ttl_seconds: int = CODE_TTL_SECONDS,
        limits: ClaimLimits | None = None,
    ) -> None:
        self.store = store
        self.client = store.client
        self.key_prefix = store.key_prefix
        self.code_ttl_seconds = code_ttl_seconds
        self.limits = limits or ClaimLimits(store.key_prefix)
        self._share = self.client.register_script(self.SHARE_SCRIPT)
        self._take = self.client.register_script(self.TAKE_SCRIPT)
        self._apply = self.client.register_script(self.APPLY_SCRIPT)
        self._finish = self.client.register_script(self.FINISH_SCRIPT)

    # ------------------------------------------------------------------ key names

    def share_key(self, session_key: str) -> str:
        return f"{self.key_prefix}:share:{{{session_key}}}"

    def code_key(self, hashed: str) -> str:
        return f"{self.key_prefix}:code:{{{hashed}}}"

    def outbox_key(self, session_key: str) -> str:
        return f"{self.key_prefix}:xfer:{{{session_key}}}"

    def marker_key(self, target_key: str, claim_id: str) -> str:
        return f"{self.key_prefix}:idem:{{{target_key}}}:claim-{claim_id}"

    def took_key(self, source_key: str, claim_id: str) -> str:
        return f"{self.key_prefix}:idem:{{{source_key}}}:took-{claim_id}"

    @property
    def sweep_lease_key(self) -> str:
        return f"{self.key_prefix}:xfer-sweep"

    @property
    def outbox_pattern(self) -> str:
        return f"{self.key_prefix}:xfer:{{*"

    def source_of_outbox(self, key: str) -> str | None:
        """``<prefix>:xfer:{abc}`` -> ``abc``; None for a key of any other shape."""
        head = f"{self.key_prefix}:xfer:{{"
        if key.startswith(head) and key.endswith("}") and "}" not in key[len(head) : -1] and len(key) > len(head) + 1:
            return key[len(head) : -1]
        return None

    # ------------------------------------------------------------------ share

    async def share(self, session_key: str, secret: bytes) -> Share:
        """A new code for the cart (its previous one stops working): two round trips.

        SHARE records the code's hash on the cart's slot and touches the cart; a pipeline then maps the
        hash to the cart (SET NX: a hash another cart's live code holds is never taken over) and deletes
        the previous code's mapping. ``EmptyCartError`` for a cart without lines (nothing written).
        """
        first_previous: str | None = None
        for _ in range(SHARE_ATTEMPTS):
            code = new_code()
            hashed = code_hash(secret, code)
            now = _now()
            status, previous, flat = await self._record_share(session_key, hashed, now)
            if status == "empty":
                raise EmptyCartError()
            if first_previous is None:
                first_previous = previous
            if await self._map_code(session_key, hashed, first_previous):
                expires_at = datetime.fromtimestamp(now + self.code_ttl_seconds, UTC)
                return Share(display(code), expires_at, _parse_cart(flat))
            logger.warning("A new transfer code's hash was already live for another cart; drawing another")
        raise RuntimeError(f"{SHARE_ATTEMPTS} transfer codes in a row collided with live ones")  # ~never

    async def _record_share(self, session_key: str, hashed: str, now: int) -> tuple[str, str, list[str]]:
        keys = [self.store.cart_key(session_key), self.share_key(session_key)]
        args: list[Any] = [hashed, self.code_ttl_seconds, self.store.ttl_seconds, now]
        status, previous, flat = await _call(lambda: self._share(keys=keys, args=args), idempotent=False)
        return str(status), str(previous), list(flat)

    async def _map_code(self, session_key: str, hashed: str, previous: str) -> bool:
        """SET the code's mapping NX (false: another cart's live code has this hash) and drop the previous one."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.code_key(hashed), session_key, ex=self.code_ttl_seconds, nx=True)
        if previous and previous != hashed:
            pipe.delete(self.code_key(previous))
        replies = await _call(lambda: pipe.execute(raise_on_error=False), idempotent=False)
        _raise_errors(replies)
        return bool(replies[0])

    # ------------------------------------------------------------------ claim

    async def claim(
        self,
        target_key: str,
        *,
        secret: bytes,
        code: str | None = None,
        source_key: str | None = None,
        mode: str = "merge",
        claim_id: str,
        refresh: Refresh,
        caller: str,
        fingerprint: str = "",
    ) -> Claimed:
        """Move the source cart's lines (named by ``code`` or ``source_key``) into the target cart.

        ``claim_id`` names this claim (``claim_id_for`` an idempotency key, else ``new_claim_id``): the same
        id again answers the same claim, ``replayed``, and never applies twice. ``fingerprint`` (the call's
        arguments' hash, when an idempotency key came) makes the same id with other arguments a
        ``ClaimConflict``. ``caller`` is whom failed claims by code are counted against.
        """
        if (code is None) == (source_key is None):
            raise ValueError("a claim names its source by code or by session key, not both or neither")
        if mode not in MODES:
            raise ValueError(f"unknown claim mode {mode!r}")
        if not CLAIM_ID.fullmatch(claim_id):
            raise ValueError("a claim id is 32 lower-case hex digits")
        hashed = code_hash(secret, normalize(code)) if code is not None else ""  # shape first: no Redis yet
        if source_key == target_key:
            raise SelfClaimError()
        marker = self.marker_key(target_key, claim_id)

        # Step 0, one round trip: was this claim applied already? With a code: the limits, and whose code it is.
        pipe = self.client.pipeline(transaction=False)
        pipe.get(marker)
        if code is not None:
            self.limits.queue_check(pipe, caller)
            pipe.get(self.code_key(hashed))
        replies = await _call(lambda: pipe.execute(raise_on_error=False), idempotent=True)
        _raise_errors(replies)
        if replies[0] is not None:
            return await self._replayed(target_key, claim_id, replies[0], fingerprint, hashed)
        if code is not None:  # the limits count only now: a replay is no guess
            source_key = replies[5]
            refusal = self.limits.refusal(replies[1:5])
            if refusal is not None:
                raise refusal
            if source_key is None:
                return await self._failed(target_key, claim_id, fingerprint, caller)
            if source_key == target_key:
                raise SelfClaimError()
        assert source_key is not None

        finished_ours: Claimed | None = None  # an earlier, stalled claim from this source into this target
        for _ in range(TAKE_ATTEMPTS):
            status, flat, shared = await self.take(source_key, target_key, claim_id, mode, hashed, fingerprint)
            if status == "bad_code":
                if finished_ours is not None:  # a retry without the key of a claim that stalled: it is done now
                    return finished_ours
                return await self._failed(target_key, claim_id, fingerprint, caller)
            if status == "taken_before" or (status == "taken" and not flat):
                # Nothing to move: the source had no lines, or this claim took them before (a racer of a retry
                # that finished meanwhile). APPLY with no lines answers the claim: replayed if it was applied.
                empty = _Outbox(source_key, target_key, claim_id, mode, _now(), fingerprint, {})
                return await self._complete(empty, refresh, shared, fresh=status == "taken")
            outbox = _Outbox.read(source_key, _pairs(flat))
            if outbox is None:
                raise _damaged_outbox(self.outbox_key(source_key))
            if status == "taken":
                return await self._complete(outbox, refresh, shared, fresh=True)
            if outbox.claim_id == claim_id and outbox.target == target_key:  # this claim, resumed
                done = await self._complete(outbox, refresh, hashed)
                if fingerprint and outbox.fingerprint and outbox.fingerprint != fingerprint:
                    raise ClaimConflict()  # the key's first use, with other arguments, is done now; this is not
                return done
            done = await self._complete(outbox, refresh, "")  # another claim stalled here: finish it first
            if outbox.target == target_key:
                finished_ours = done
        raise ClaimBusy()

    async def take(
        self, source_key: str, target_key: str, claim_id: str, mode: str, hashed: str, fingerprint: str
    ) -> tuple[str, list[str], str]:
        """Step 1 (TAKE) on the source's slot: ``('taken'|'pending'|'taken_before'|'bad_code', outbox fields,
        the hash of the code the cart had, now dead: '' if none or not taken)``."""
        keys = [
            self.store.cart_key(source_key),
            self.outbox_key(source_key),
            self.share_key(source_key),
            self.took_key(source_key, claim_id),
        ]
        args: list[Any] = [claim_id, target_key, hashed, mode, _now(), fingerprint, CLAIM_MARKER_TTL_SECONDS]
        status, flat, shared = await _call(lambda: self._take(keys=keys, args=args), idempotent=False)
        return str(status), list(flat), str(shared)

    async def apply(self, outbox: _Outbox, refresh: Refresh) -> tuple[str, str, list[str]]:
        """Steps 2 and 3: refresh each line from the catalog, then APPLY on the target's slot (once per claim)."""
        fresh, skipped = _refreshed(outbox.lines, refresh)
        store = self.store
        keys = [store.cart_key(outbox.target), self.marker_key(outbox.target, outbox.claim_id)]
        args: list[Any] = [
            outbox.mode,
            store.max_quantity,
            store.max_lines,
            store.ttl_seconds,
            _now(),
            CLAIM_MARKER_TTL_SECONDS,
            outbox.fingerprint,
            outbox.source,
            len(skipped),
            *skipped,
        ]
        for product_id, quantity, tail in fresh:
            args += [product_id, quantity, tail]
        status, report, flat = await _call(lambda: self._apply(keys=keys, args=args), idempotent=False)
        return str(status), str(report), list(flat)

    async def finish(self, source_key: str, claim_id: str, hashed: str) -> None:
        """Step 4 (FINISH): the source's outbox goes if it is still this claim's; the code's mapping too (best
        effort: the code is dead already, TAKE deleted the cart's share). One pipeline."""
        outbox_key = self.outbox_key(source_key)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", self._finish.sha, 1, outbox_key, claim_id)
        if hashed:
            pipe.delete(self.code_key(hashed))
        replies = await _call(lambda: pipe.execute(raise_on_error=False), idempotent=False)
        if isinstance(replies[0], NoScriptError):  # not loaded on that node yet: it did not run
            await _call(lambda: self._finish(keys=[outbox_key], args=[claim_id]), idempotent=False)
        elif isinstance(replies[0], Exception):
            raise _storage_error(replies[0]) if isinstance(replies[0], RedisError) else replies[0]
        if hashed and isinstance(replies[-1], Exception):
            logger.info("A used transfer code's mapping was not deleted (it expires by itself): %s", replies[-1])

    async def _complete(self, outbox: _Outbox, refresh: Refresh, hashed: str, *, fresh: bool = False) -> Claimed:
        """APPLY and FINISH an outbox. ``fresh``: this call's own TAKE filled it, so this call is the claim's first,
        even when another worker, finding the outbox pending, applied it first (APPLY then says replayed)."""
        status, report, flat = await self.apply(outbox, refresh)
        await self.finish(outbox.source, outbox.claim_id, hashed)
        if status == "replayed" and not fresh:
            return _claimed(_parse_cart(flat), report, replayed=True, fingerprint=outbox.fingerprint)
        return _claimed(_parse_cart(flat), report, replayed=False)

    async def _replayed(
        self, target_key: str, claim_id: str, report: str, fingerprint: str, hashed: str = ""
    ) -> Claimed:
        """The claim was applied before: the target as it is now, with the stored report. Its outbox may still be
        there (the claim stopped after APPLY): FINISH it first, from the source the report names. The same id with
        other arguments is refused before anything is touched: ``hashed`` is then another share's live code."""
        stored = json.loads(report)
        if fingerprint and stored.get("f") and stored["f"] != fingerprint:
            raise ClaimConflict()
        source = stored.get("src")
        if isinstance(source, str) and source and source != target_key:
            await self.finish(source, claim_id, hashed)
        cart = await self.store.view(target_key)
        return _claimed(cart, report, replayed=True, fingerprint=fingerprint)

    async def _failed(self, target_key: str, claim_id: str, fingerprint: str, caller: str) -> Claimed:
        """The code is not (or no longer) the source's: a replay if this very claim won meanwhile (a race of
        retries), else a failed claim, counted, and ``TransferCodeError``."""
        marker = self.marker_key(target_key, claim_id)
        report = await _call(lambda: self.client.get(marker), idempotent=True)
        if report is not None:
            return await self._replayed(target_key, claim_id, report, fingerprint)
        pipe = self.client.pipeline(transaction=False)
        self.limits.queue_failure(pipe, caller)
        try:
            _raise_errors(await pipe.execute(raise_on_error=False))
        except RedisError as exc:  # the answer is the same; the count is lost, and the log says so
            logger.error("A failed transfer-code claim was not counted: %s", _storage_error(exc))
        raise TransferCodeError()

    # ------------------------------------------------------------------ the sweep

    async def finish_stalled(self, older_than_seconds: int, *, refresh: Refresh, now: int | None = None) -> SweepReport:
        """Finish every outbox older than the age (SCAN ``<prefix>:xfer:{*``; on a cluster every primary).

        Outboxes exist only while a claim runs, so the scan finds few; each found old enough is finished
        as its claim would have (APPLY once by its id, FINISH). An unreadable outbox is reported, never
        deleted: its lines are still there for the operator.
        """
        cutoff = (_now() if now is None else now) - older_than_seconds
        report = SweepReport()
        async for key in self._outbox_keys():
            report.scanned += 1
            source = self.source_of_outbox(key)
            stored = await self._read_outbox(key)
            if not stored or source is None:
                continue  # finished since the scan saw it
            outbox = _Outbox.read(source, stored)
            if outbox is None:
                report.damaged.append(key)
                logger.warning("A transfer outbox is unreadable and was left as it is: %s", key)
                continue
            if outbox.taken_at >= cutoff:
                continue
            try:
                await self._complete(outbox, refresh, "")
            except CartStorageError as exc:  # one outbox's trouble (a damaged target cart) must not stop the sweep
                report.failed += 1
                logger.warning("A stalled cart transfer could not be finished now (%s): %s", exc.kind, key)
                continue
            report.finished += 1
        if report.finished:
            logger.info("Finished %d stalled cart transfer(s)", report.finished)
        return report

    async def sweep(
        self,
        *,
        refresh: Refresh,
        holder: str,
        lease_seconds: float = SWEEP_LEASE_SECONDS,
        stalled_after: int = STALLED_AFTER_SECONDS,
    ) -> SweepReport | None:
        """The per-worker minute job: under the ``xfer-sweep`` lease (SET NX, expiring after ``lease_seconds``)
        one worker a minute finishes outboxes older than ``stalled_after``; the others get None, do nothing."""
        key, lease_ms = self.sweep_lease_key, max(1, int(lease_seconds * 1000))
        try:
            leased = await self.client.set(key, holder, nx=True, px=lease_ms)
        except RedisError as exc:  # a background job's failure is no tool's: the store's condition is left as it is
            logger.info("Transfer sweep skipped: cart storage failed (%s)", type(exc).__name__)
            return None
        if not leased:
            return None
        return await self.finish_stalled(stalled_after, refresh=refresh)

    async def movable(self, source_keys: Iterable[str]) -> list[str]:
        """Which of these carts hold lines or a claim in flight (an outbox), so a claim from them would move
        something: one pipeline of EXISTS, so a signed-in call with nothing to merge pays one round trip."""
        keys = list(source_keys)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(self.store.cart_key(key), self.outbox_key(key))
        replies = await _call(lambda: pipe.execute(raise_on_error=False), idempotent=True)
        _raise_errors(replies)
        return [key for key, found in zip(keys, replies, strict=True) if found]

    async def _read_outbox(self, key: str) -> dict[str, str]:
        stored: dict[str, str] = await _call(lambda: self.client.hgetall(key), idempotent=True)
        return stored

    async def _outbox_keys(self) -> AsyncIterator[str]:
        try:
            async for key in self.client.scan_iter(match=self.outbox_pattern, count=SCAN_COUNT):
                yield key
        except RedisError as exc:
            raise _storage_error(exc) from exc


def _now() -> int:
    return int(time.time())


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _raise_errors(replies: Iterable[Any]) -> None:
    for reply in replies:
        if isinstance(reply, RedisError):
            raise reply


def _damaged_outbox(key: str) -> CartStorageError:
    """An outbox without a readable claim (written by hand): the source's lines wait there for the operator."""
    logger.error("A transfer outbox is unreadable; the operator must look at it: %s", key)
    return CartStorageError(
        f"the transfer outbox {key} is unreadable (damaged)", maybe_applied=False, kind=Fault.DAMAGED
    )


def _refreshed(lines: dict[str, str], refresh: Refresh) -> tuple[list[tuple[str, int, str]], list[str]]:
    """Each outbox line with the catalog's current name and price, or skipped: unreadable (a damaged line, of
    which only a field shaped like a product id is named), gone from the catalog or without a price."""
    fresh: list[tuple[str, int, str]] = []
    skipped: list[str] = []
    unreadable = 0
    for product_id, value in sorted(lines.items()):
        if product_id == LAST_ACCESSED_FIELD:
            continue
        line = parse_line(product_id, value)
        current = refresh(line.product_id) if line is not None else None
        if line is None or current is None:
            if looks_like_product_id(product_id):
                skipped.append(product_id)
            else:
                unreadable += 1
            continue
        name, price = current
        fresh.append((line.product_id, line.quantity, line_value_tail(name, price)))
    if unreadable:
        logger.warning("A claim left out %d unreadable line(s) without a product id", unreadable)
    return fresh, skipped


def _claimed(cart: Cart, report: str, *, replayed: bool, fingerprint: str = "") -> Claimed:
    data = json.loads(report)
    if replayed and fingerprint and data.get("f") and data["f"] != fingerprint:
        raise ClaimConflict()
    return Claimed(
        cart=cart,
        lines=int(data["lines"]),
        capped=tuple(data["capped"]),
        skipped=tuple(data["skipped"]),
        replayed=replayed,
    )
