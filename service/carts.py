"""The cart store: one Redis hash per conversation, changed only by Lua scripts.

Layout (DESIGN.md): ``<prefix>:cart:{<session-key>}`` is a HASH with one field per line,
``<product_id>`` -> ``{"q":2,"n":"…","p":"24.40"}`` (quantity, name and price when added; one-letter
keys because every byte of a line counts toward the listpack limit), plus ``_last_accessed``.
Every cart call is one round trip: a script registered once and called by SHA does the
read-modify-write, the ``_last_accessed`` stamp and the sliding TTL atomically, so two
workers adding to one cart at once lose nothing. A cart with no lines has no key.

The same class serves the embedded store (fakeredis in this process) and a real Redis. It is also
the operator's only way in (``weft-mcp sessions``): its sweeps read and purge through the same layout
and scripts, and reading there never counts as an access (no stamp, no TTL refresh).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from service.cart_count import CartCount, CartCounter
from service.cart_reports import CartDetail, CartListing, CartSummary, CountReport, DamageReport, KeyState, PurgeReport
from service.catalog_text import clean_text
from service.claim_limits import ClaimLimits
from service.idempotency import IdempotentChange
from service.metrics import REDIS_ERRORS, note_storage_condition
from service.product_ids import looks_like_product_id
from service.redis_clients import TEXT_REPLIES, close_client, open_client
from service.storage_faults import Diagnosis, Fault, diagnose

if TYPE_CHECKING:
    from service.config import Settings

logger = logging.getLogger(__name__)

LAST_ACCESSED_FIELD = "_last_accessed"
# The key readiness probes: of the cart shape (so the ACL's key patterns and the cluster routing are
# the tools'), but no session maps to it: ids starting "h-" are always hashed to "h-<32 hex>".
PROBE_SESSION_KEY = "h-readyz"
SCAN_COUNT = 1000
CONNECT_TIMEOUT_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 1.5
# Retried, with backoff, only where a repeat cannot apply a change twice (view, set/remove,
# clear, count, ping), and only on connection errors: a refused or reset connection fails at
# once, so three tries stay well inside the 2 s budget, while a timeout (1.5 s) is never retried.
IDEMPOTENT_RETRY = AsyncRetry(
    ExponentialWithJitterBackoff(cap=0.25, base=0.05), retries=2, supported_errors=(RedisConnectionError,)
)
# A sweep's progress: keys scanned so far, and carts deleted so far (None when nothing is deleted).
SweepProgress = Callable[[int, int | None], None]
DAMAGED_STAMP = "unreadable _last_accessed (not Unix seconds)"
# A readable line (``parse_line``; the scripts' ``readable_quantity`` checks the same shape): a quantity of
# 1..MAX_STORED_QUANTITY (WEFT_MAX_QUANTITY's own upper bound, so lines written under a higher old setting stay
# readable), a name, a positive price of at most 12 integer digits and 2 places, under a product id field.
MAX_STORED_QUANTITY = 1_000_000
_STORED_PRICE = re.compile(r"\d{1,12}(\.\d{1,2})?")
# A readable stamp: Unix seconds after 0 and at most this far ahead of now (clock skew between hosts).
MAX_STAMP_AHEAD_SECONDS = 86400
# Commands the scripts run on a cart key, checked by the readiness probe; EXPIRE or PERSIST by the TTL setting.
SCRIPT_COMMANDS = ("HGET", "HLEN", "HEXISTS", "HGETALL", "HSET", "HDEL")


class CartStorageError(RuntimeError):
    """A cart storage call failed; ``kind`` says why (``service.storage_faults.Fault``).

    ``maybe_applied`` is true when the command was sent but no answer came: the script may
    have run, so a change that is not idempotent must not be repeated blindly.
    """

    def __init__(
        self, message: str, *, maybe_applied: bool, kind: str = Fault.UNREACHABLE, missing: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.kind = Fault(kind)
        self.missing = tuple(missing)  # the commands the ACL denies, when the probe knows them


class CartRejected(ValueError):
    """The change breaks a cart rule; nothing was written."""

    def __init__(self, reason: str, current: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.current = current


@dataclass(frozen=True, slots=True)
class CartLine:
    product_id: str
    quantity: int
    name: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Cart:
    lines: tuple[CartLine, ...]
    last_accessed: int | None
    damaged_lines: int = 0  # stored lines that are unreadable: left out of ``lines`` and of every total
    replayed: bool = False  # an idempotent retry: nothing changed, this is the cart as it is now

    @property
    def is_empty(self) -> bool:
        return not self.lines


EMPTY_CART = Cart(lines=(), last_accessed=None)


def cart_key_head(key_prefix: str) -> str:
    """``<prefix>:cart:{``: what every cart key starts with; the session key and ``}`` follow."""
    return f"{key_prefix}:cart:{{"


def cart_key(key_prefix: str, session_key: str) -> str:
    """``<prefix>:cart:{<session-key>}``: the braces are the cluster hash tag that keeps a cart in one slot."""
    return f"{cart_key_head(key_prefix)}{session_key}}}"


def line_value_tail(name: str, price: Decimal) -> str:
    """The part of a line's JSON after the quantity; the script prepends ``{"q":N,``."""
    return json.dumps({"n": name, "p": f"{price:.2f}"}, ensure_ascii=False, separators=(",", ":"))[1:]


class CartStore:
    """Carts over the Redis protocol; each cart call is one script call (or one DEL).

    The operator's reads and the idle purge are methods here too (``count_with_damage``, ``list_carts``,
    ``cart_detail``, ``delete_cart``, ``purge_idle``): batched sweeps over ``scan_cart_keys``, one
    pipeline of script calls per SCAN batch, so only this class knows the layout.
    """

    # Shared Lua: stamp the access, slide the TTL, return the whole cart (and ``line_count``, the one
    # definition of a cart's line count, used by the operator's sweeps too). The stamp and the TTL use
    # pcall: after a script's change they must not fail halfway, and when Redis is out of memory a
    # read still answers with the stamp left as it was. Every writing script's first command is a hash read,
    # so a key of another type fails (WRONGTYPE) before anything is written.
    _TOUCH = """
local function touch(key, now, ttl)
  redis.pcall('HSET', key, '_last_accessed', now)
  if ttl > 0 then redis.pcall('EXPIRE', key, ttl) else redis.pcall('PERSIST', key) end
  return redis.call('HGETALL', key)
end
local function line_count(key)
  return redis.call('HLEN', key) - redis.call('HEXISTS', key, '_last_accessed')
end
-- A line's quantity if the line has the stored shape {"q":N,"n":"…","p":"D.DD"} (service.carts.parse_line
-- is the whole definition), else nil: the scripts never build on a line they cannot read.
local function readable_quantity(value)
  local quantity, price = string.match(value, '^{"q":([1-9]%d*),"n":".*","p":"([%d.]+)"}$')
  quantity = tonumber(quantity)
  if not quantity or quantity > 1000000 then return nil end
  local whole = string.match(price, '^(%d+)$') or string.match(price, '^(%d+)%.%d%d?$')
  if not whole or #whole > 12 or tonumber(price) <= 0 then return nil end
  return quantity
end
"""

    # Idempotent retries (service.idempotency), shared by the changing scripts: KEYS[2] is the change's record
    # (the cart key itself when the call sent no key: never touched then), ``fp`` its fingerprint ('' = no key).
    # ``seen`` answers a retry (the cart as it is now, stamped as a view would) or a reused key; ``record``
    # writes the record after the change succeeded, so a rejected change records nothing.
    _IDEMPOTENT = """
local function seen(fp, now, ttl)
  if fp == '' then return nil end
  local recorded = redis.call('GET', KEYS[2])
  if not recorded then return nil end
  if recorded ~= fp then return {'idempotency_conflict', 0} end
  if redis.call('HLEN', KEYS[1]) == 0 then return {'replayed', {}} end
  return {'replayed', touch(KEYS[1], now, ttl)}
end
local function record(fp, idem_ttl)
  if fp ~= '' then redis.call('SET', KEYS[2], fp, 'EX', idem_ttl) end
end
"""

    # KEYS[1] cart, KEYS[2] idempotency record; ARGV: product_id, delta, value tail, max quantity, max lines, ttl,
    # now, fingerprint, record ttl
    ADD_SCRIPT = (
        _TOUCH
        + _IDEMPOTENT
        + """
local replay = seen(ARGV[8], ARGV[7], tonumber(ARGV[6]))
if replay then return replay end
local key, field, delta = KEYS[1], ARGV[1], tonumber(ARGV[2])
local max_quantity, max_lines = tonumber(ARGV[4]), tonumber(ARGV[5])
local current = redis.call('HGET', key, field)
local quantity = delta
if current then
  local stored = readable_quantity(current)
  if not stored then return {'damaged_line', 0} end
  quantity = stored + delta
  if quantity > max_quantity then return {'quantity_limit', stored} end
else
  local lines = line_count(key)
  if lines >= max_lines then return {'line_limit', lines} end
  if quantity > max_quantity then return {'quantity_limit', 0} end
end
redis.call('HSET', key, field, '{"q":' .. quantity .. ',' .. ARGV[3])
record(ARGV[8], ARGV[9])
return {'ok', touch(key, ARGV[7], tonumber(ARGV[6]))}
"""
    )

    # KEYS[1] cart, KEYS[2] idempotency record; ARGV: product_id, quantity (0 removes), ttl, now, fingerprint,
    # record ttl
    SET_QUANTITY_SCRIPT = (
        _TOUCH
        + _IDEMPOTENT
        + """
local replay = seen(ARGV[5], ARGV[4], tonumber(ARGV[3]))
if replay then return replay end
local key, field, quantity = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = redis.call('HGET', key, field)
if not current then return {'not_in_cart', 0} end
if quantity == 0 then
  redis.call('HDEL', key, field)
  if line_count(key) == 0 then  -- the stamp is the only field left: deleting it deletes the key (no DEL needed)
    redis.pcall('HDEL', key, '_last_accessed')
    record(ARGV[5], ARGV[6])
    return {'ok', {}}
  end
elseif not readable_quantity(current) then
  return {'damaged_line', 0}
else
  redis.call('HSET', key, field, (string.gsub(current, '^{"q":%d+', '{"q":' .. quantity, 1)))
end
record(ARGV[5], ARGV[6])
return {'ok', touch(key, ARGV[4], tonumber(ARGV[3]))}
"""
    )

    # KEYS[1] cart, KEYS[2] idempotency record; ARGV: ttl, now, fingerprint, record ttl. One round trip, so
    # clear_cart can record its key with the change.
    CLEAR_SCRIPT = (
        _TOUCH
        + _IDEMPOTENT
        + """
local replay = seen(ARGV[3], ARGV[2], tonumber(ARGV[1]))
if replay then return replay end
redis.call('DEL', KEYS[1])
record(ARGV[3], ARGV[4])
return {'ok', {}}
"""
    )

    # KEYS[1] cart; ARGV: ttl, now. Reading an empty cart writes nothing.
    VIEW_SCRIPT = (
        _TOUCH
        + """
if redis.call('HLEN', KEYS[1]) == 0 then return {'ok', {}} end
return {'ok', touch(KEYS[1], ARGV[2], tonumber(ARGV[1]))}
"""
    )

    # KEYS[1] the probe key (no cart); ARGV[1] 'EXPIRE' or 'PERSIST' (what the TTL setting uses), ARGV[2..] the
    # commands the scripts run. Returns the commands the ACL denies on a key of the cart shape (checked with
    # redis.acl_check_cmd, Redis 7+, which runs nothing): the scripts' own, else ARGV[1] and DEL if denied
    # (the scripts set the TTL with pcall, so without it only expiry is lost; DEL is clear_cart's). Only when
    # every script command is allowed does it write: HSET then HDEL of the only field, which removes the key,
    # so nothing stays whatever the ACL denies; the HSET is the script's first write, which Redis refuses
    # under maxmemory. Without acl_check_cmd (fakeredis) the write and its removal are the check.
    PROBE_SCRIPT = """
local key = KEYS[1]
local denied = {}
if redis.acl_check_cmd then
  local samples = {HGET = {'f'}, HEXISTS = {'f'}, HSET = {'f', 'v'}, HDEL = {'f'}, EXPIRE = {'1'}}
  local function allowed(command)
    return redis.acl_check_cmd(command, key, unpack(samples[command] or {}))
  end
  for index = 2, #ARGV do
    if not allowed(ARGV[index]) then table.insert(denied, ARGV[index]) end
  end
  if #denied > 0 then return denied end
  if not allowed(ARGV[1]) then table.insert(denied, ARGV[1]) end
  if not allowed('DEL') then table.insert(denied, 'DEL') end
end
redis.call('HSET', key, '_probe', '1')
redis.call('HDEL', key, '_probe')
return denied
"""

    # KEYS[1] a scanned key; writes nothing (reading is not an access). What a sweep needs to know of a key:
    # its type and, for a hash, every field, judged in Python by the one definition (``_key_state``).
    INSPECT_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' then return {kind, {}} end
return {kind, redis.call('HGETALL', KEYS[1])}
"""

    # KEYS[1] cart; ARGV[1] cutoff (Unix seconds). Deletes the cart only if it is still idle, so a chat
    # that came back between the sweep's read and the delete keeps its cart. Returns 1 if deleted.
    PURGE_IF_IDLE_SCRIPT = """
local last = tonumber(redis.call('HGET', KEYS[1], '_last_accessed'))
if last and last < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""

    # KEYS[1] <prefix>:secret; ARGV[1] a new random secret. The deployment's generated secret: the first worker's
    # SET NX wins, every worker reads the winner, in one round trip.
    SHARED_SECRET_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""

    def __init__(
        self,
        client: redis.Redis,
        *,
        backend: str,
        key_prefix: str = "weft",
        ttl_seconds: int = 0,
        max_quantity: int = 99,
        max_lines: int = 100,
        idempotency_ttl_seconds: int = 86400,
        transfer_code_ttl_seconds: int = 600,
        claim_limits: ClaimLimits | None = None,
    ) -> None:
        from service.cart_transfers import CartTransfers  # it builds on this module's scripts and parsing

        self.client = client
        self.backend = backend
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.max_quantity = max_quantity
        self.max_lines = max_lines
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self._add = client.register_script(self.ADD_SCRIPT)
        self._set_quantity = client.register_script(self.SET_QUANTITY_SCRIPT)
        self._clear = client.register_script(self.CLEAR_SCRIPT)
        self._shared_secret = client.register_script(self.SHARED_SECRET_SCRIPT)
        self._view = client.register_script(self.VIEW_SCRIPT)
        self._probe = client.register_script(self.PROBE_SCRIPT)
        self._inspect_key = client.register_script(self.INSPECT_SCRIPT)
        self._purge_if_idle = client.register_script(self.PURGE_IF_IDLE_SCRIPT)
        self.cart_counter = CartCounter(self.count_carts)
        # Transfer codes and claims: keys of their own, never of the cart shape (service.cart_transfers).
        self.transfers = CartTransfers(self, code_ttl_seconds=transfer_code_ttl_seconds, limits=claim_limits)

    @classmethod
    def connect(
        cls,
        redis_url: str | None,
        *,
        cluster: bool = False,
        sentinels: Sequence[str] = (),
        sentinel_service: str = "mymaster",
        **options: Any,
    ) -> CartStore:
        """A store on one Redis, a Redis Cluster or a Sentinel-watched primary; fakeredis when none is named.

        The same scripts serve every topology: each touches only ``KEYS[1]``, one cart whose hash
        tag pins it to one cluster slot. No client retries blindly (see ``service.redis_clients``).
        """
        if redis_url is None and not sentinels:
            import fakeredis

            return cls(fakeredis.FakeAsyncRedis(**TEXT_REPLIES), backend="embedded", **options)
        client, backend = open_client(
            redis_url,
            cluster=cluster,
            sentinels=sentinels,
            sentinel_service=sentinel_service,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        return cls(client, backend=backend, **options)

    @classmethod
    def from_settings(cls, settings: Settings) -> CartStore:
        """The store the ``WEFT_`` settings describe: what every worker and operator command opens."""
        return cls.connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            sentinels=settings.redis_sentinels,
            sentinel_service=settings.redis_sentinel_service,
            key_prefix=settings.key_prefix,
            ttl_seconds=settings.cart_ttl_seconds,
            max_quantity=settings.max_quantity,
            max_lines=settings.max_cart_lines,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
            transfer_code_ttl_seconds=settings.transfer_code_ttl_seconds,
            claim_limits=ClaimLimits(
                settings.key_prefix,
                per_caller=settings.claim_failures_per_caller,
                total=settings.claim_failures_total,
                window_seconds=settings.claim_failure_window_seconds,
            ),
        )

    def cart_key(self, session_key: str) -> str:
        return cart_key(self.key_prefix, session_key)

    def idempotency_record_key(self, session_key: str, digest: str) -> str:
        """``<prefix>:idem:{<session-key>}:<digest>``: in the cart's slot (same hash tag), never of the cart shape."""
        return f"{self.key_prefix}:idem:{{{session_key}}}:{digest}"

    @property
    def secret_key(self) -> str:
        return f"{self.key_prefix}:secret"

    async def shared_secret(self) -> str:
        """The deployment's generated secret (``<prefix>:secret``): created once with SET NX, read by every
        worker, in one round trip. Used only when ``WEFT_SECRET_KEY`` is unset."""
        candidate = secrets.token_urlsafe(32)
        value = await _call(lambda: self._shared_secret(keys=[self.secret_key], args=[candidate]), idempotent=True)
        return str(value)

    @property
    def cart_pattern(self) -> str:
        """``<prefix>:cart:{*``: with ``is_cart_key`` exactly this deployment's carts, never those of a
        deployment whose prefix starts like ours (``weft`` and ``weft:cart:eu``)."""
        return cart_key_head(self.key_prefix) + "*"

    def is_cart_key(self, key: str) -> bool:
        """Prefixes and session keys hold no braces, so ``<prefix>:cart:{...}`` ending in ``}`` is ours."""
        head = cart_key_head(self.key_prefix)
        return key.startswith(head) and key.endswith("}") and "}" not in key[len(head) : -1]

    def session_key_of(self, key: str) -> str:
        """``<prefix>:cart:{abc}`` -> ``abc``; a key not of this store's cart shape comes back as it is."""
        return key[len(cart_key_head(self.key_prefix)) : -1] if self.is_cart_key(key) else key

    async def view(self, session_key: str) -> Cart:
        return await self._run(self._view, session_key, self.ttl_seconds, _now(), idempotent=True)

    async def add(
        self,
        session_key: str,
        product_id: str,
        quantity: int,
        name: str,
        price: Decimal,
        *,
        change: IdempotentChange | None = None,
    ) -> Cart:
        """Add ``quantity`` to the line, creating it (with name and price) when new. With ``change`` (an
        idempotency key) a retry adds nothing and answers the cart with ``replayed``; so it is also retried
        on a connection error, which without a key it never is (it may have run)."""
        self._check(product_id, quantity, low=1, high=None)  # the script enforces the line's maximum
        tail = line_value_tail(name, price)
        args = (product_id, quantity, tail, self.max_quantity, self.max_lines, self.ttl_seconds, _now())
        return await self._change(self._add, session_key, change, args, idempotent=change is not None)

    async def set_quantity(
        self, session_key: str, product_id: str, quantity: int, *, change: IdempotentChange | None = None
    ) -> Cart:
        """Set an existing line's quantity; 0 removes the line (and the key with the last one)."""
        self._check(product_id, quantity, low=0, high=self.max_quantity)
        args = (product_id, quantity, self.ttl_seconds, _now())
        return await self._change(self._set_quantity, session_key, change, args, idempotent=True)

    async def remove(self, session_key: str, product_id: str, *, change: IdempotentChange | None = None) -> Cart:
        return await self.set_quantity(session_key, product_id, 0, change=change)

    async def clear(self, session_key: str, *, change: IdempotentChange | None = None) -> Cart:
        """Delete the cart (one script, so an idempotency key is recorded with it)."""
        return await self._change(self._clear, session_key, change, (self.ttl_seconds, _now()), idempotent=True)

    async def _change(
        self,
        script: AsyncScript,
        session_key: str,
        change: IdempotentChange | None,
        args: tuple[Any, ...],
        *,
        idempotent: bool,
    ) -> Cart:
        """A changing script: KEYS = [cart, idempotency record], ARGV = ``args`` + fingerprint + record TTL."""
        cart = self.cart_key(session_key)
        record = self.idempotency_record_key(session_key, change.digest) if change else cart
        extra = (change.fingerprint, self.idempotency_ttl_seconds) if change else ("", 0)
        keys = [cart, record]
        reply = await _call(lambda: script(keys=keys, args=[*args, *extra]), idempotent=idempotent)
        return _cart_of(reply)

    async def _scan(self) -> AsyncIterator[str]:
        """``SCAN MATCH <prefix>:cart:{* COUNT 1000`` (never KEYS, which blocks Redis); every primary on a
        cluster. Only keys of the exact cart shape come out."""
        async for key in self.client.scan_iter(match=self.cart_pattern, count=SCAN_COUNT):
            if self.is_cart_key(key):
                yield key

    async def scan_cart_keys(self) -> AsyncIterator[str]:
        """Every cart key, for operators; a failure mid-sweep is a ``CartStorageError``."""
        try:
            async for key in self._scan():
                yield key
        except RedisError as exc:
            raise _storage_error(exc) from exc

    async def count_carts(self) -> int:
        """Carts that exist (SCAN may return a key twice while Redis resizes its table: a rare overcount)."""

        async def count() -> int:  # a retry starts the scan over
            return sum([1 async for _ in self._scan()])

        carts: int = await _call(count, idempotent=True)
        return carts

    async def counted_carts(self) -> CartCount:
        """``count_carts`` as seen within the last few seconds: one SCAN sweep per worker serves a burst."""
        return await self.cart_counter.get()

    async def count_with_damage(self, on_batch: SweepProgress | None = None, *, now: int | None = None) -> CountReport:
        """Carts that exist, and the damaged keys of the cart shape (skipped, never counted as carts)."""
        report, scanned = CountReport(), 0
        async for batch in self._key_batches():
            scanned += len(batch)
            for state in await self._inspect(batch, now):
                if state.damage:
                    report.damage.note(state)
                elif not state.gone:
                    report.carts += 1
            if on_batch:
                on_batch(scanned, None)
        return report

    async def list_carts(self, limit: int, *, now: int | None = None) -> CartListing:
        """The first ``limit`` carts SCAN finds (SCAN has no order), with line counts and idle ages."""
        now = _now() if now is None else now
        listing = CartListing()
        async for batch in self._key_batches():
            for state in await self._inspect(batch, now):
                if state.damage:
                    listing.damage.note(state)
                elif not state.gone and len(listing.carts) < limit:
                    idle = _idle(state.last_accessed, now)
                    session_key = self.session_key_of(state.key)
                    listing.carts.append(CartSummary(state.key, session_key, state.lines, state.last_accessed, idle))
            if len(listing.carts) >= limit:
                break
        return listing

    async def cart_detail(self, session_key: str, *, now: int | None = None) -> CartDetail:
        """One cart as stored (type, TTL, stamp, every line, readable or not), in one pipeline; touches nothing."""
        key = self.cart_key(session_key)
        pipe = self.client.pipeline(transaction=False)
        pipe.type(key)
        pipe.hgetall(key)
        pipe.ttl(key)
        kind, fields, ttl = await _call(lambda: pipe.execute(raise_on_error=False), idempotent=False)
        _raise_unless_wrongtype([kind, fields, ttl])
        detail = CartDetail(session_key=session_key, key=key, exists=kind != "none")
        if not detail.exists:
            return detail
        detail.ttl_seconds = int(ttl) if int(ttl) >= 0 else None
        if kind != "hash":
            detail.damaged = f"not a hash but a {kind}"
            return detail
        _read_fields(detail, fields, _now() if now is None else now)
        return detail

    async def delete_cart(self, session_key: str) -> bool:
        """Delete one cart, damaged or not (one DEL); false when there was none."""
        key = self.cart_key(session_key)
        return bool(await _call(lambda: self.client.delete(key), idempotent=False))

    async def purge_idle(
        self,
        older_than_seconds: int,
        *,
        dry_run: bool = False,
        now: int | None = None,
        on_batch: SweepProgress | None = None,
    ) -> PurgeReport:
        """Delete carts whose ``_last_accessed`` is older than the age, one pipeline per SCAN batch.

        Each delete re-checks the stamp inside Redis, so a cart used since it was read is kept. A
        damaged key's age is unknown: it is skipped, never deleted by age. ``dry_run`` only counts.
        """
        now = _now() if now is None else now
        cutoff = now - older_than_seconds
        report = PurgeReport(older_than_seconds=older_than_seconds, dry_run=dry_run)
        if not dry_run:
            await self._load(self._purge_if_idle)
        async for batch in self._key_batches():
            report.scanned += len(batch)
            idle = _idle_keys(await self._inspect(batch, now), cutoff, report.damage)
            report.idle += len(idle)
            if idle and not dry_run:
                replies = await self._each_key(self._purge_if_idle, idle, cutoff)
                report.deleted += sum(reply for reply in replies if isinstance(reply, int))  # else replaced since
            if on_batch:
                on_batch(report.scanned, None if dry_run else report.deleted)
        return report

    async def _key_batches(self) -> AsyncIterator[list[str]]:
        """``scan_cart_keys`` in batches of ``SCAN_COUNT`` keys, one pipeline each; loads the sweep's script first."""
        await self._load(self._inspect_key)
        batch: list[str] = []
        async for key in self.scan_cart_keys():
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _inspect(self, keys: list[str], now: int | None = None) -> list[KeyState]:
        replies = await self._each_key(self._inspect_key, keys)
        now = _now() if now is None else now
        return [_key_state(key, reply, now) for key, reply in zip(keys, replies, strict=True)]

    async def _load(self, script: AsyncScript) -> None:
        """SCRIPT LOAD (on a cluster, on every primary), so a pipeline can call the script by SHA."""
        await _call(lambda: self.client.script_load(script.script), idempotent=True)

    async def _each_key(self, script: AsyncScript, keys: list[str], *args: Any) -> list[Any]:
        """``script`` on each key: one pipeline of EVALSHAs, each routed to its key's node on a cluster.

        A NOSCRIPT reply (the server restarted, failed over or flushed its scripts since the sweep loaded
        them) reloads the script and sends those calls again: they did not run. A WRONGTYPE reply comes
        back as the error; any other error reply is a ``CartStorageError``.
        """
        replies = await self._evalsha_pipeline(script, keys, args)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self._load(script)
            again = await self._evalsha_pipeline(script, [keys[index] for index in missing], args)
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        _raise_unless_wrongtype(replies)
        return replies

    async def _evalsha_pipeline(self, script: AsyncScript, keys: list[str], args: tuple[Any, ...]) -> list[Any]:
        """One pipeline; on a cluster redis-py splits it by node. It blocks ``pipe.evalsha`` there because a
        cluster pipeline cannot load scripts first: ``_load`` did that on every primary, and ``_each_key``
        handles NOSCRIPT, so the command is sent as it is."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("EVALSHA", script.sha, 1, key, *args)
        return list(await _call(lambda: pipe.execute(raise_on_error=False), idempotent=False))

    async def ping(self) -> None:
        await _call(self.client.ping, idempotent=True)

    async def probe(self, *, scan: bool) -> tuple[str, ...]:
        """What readiness checks, through the tools' path: the scripts' commands on a key of the cart shape,
        a write (memory), and ``scan`` (what ``count_carts`` needs) with one ``SCAN 0 COUNT 1`` per primary.

        A denied script command is a ``CartStorageError`` (permission) naming it: no cart tool can be relied
        on. Returns the denied commands only some things need (``DEL``: clear_cart; ``SCAN``: the count;
        ``EXPIRE``/``PERSIST``: cart expiry, which the scripts set with pcall after the change);
        the probe leaves no key behind whatever the ACL denies (``PROBE_SCRIPT``).
        """
        keys = [self.cart_key(PROBE_SESSION_KEY)]
        ttl_command = "EXPIRE" if self.ttl_seconds > 0 else "PERSIST"
        needs = [ttl_command, *SCRIPT_COMMANDS]
        denied = list(await _call(lambda: self._probe(keys=keys, args=needs), idempotent=True))
        if set(denied) - {"DEL", ttl_command}:
            note_storage_condition(Fault.PERMISSION)
            raise CartStorageError(
                f"Redis' ACL does not let this user run {', '.join(denied)} on the cart keys, which the cart "
                "scripts need (permission)",
                maybe_applied=False,
                kind=Fault.PERMISSION,
                missing=denied,
            )
        if scan:
            try:
                await self.client.execute_command("SCAN", 0, "MATCH", self.cart_pattern, "COUNT", 1)
            except RedisError as exc:
                if diagnose(exc).fault is not Fault.PERMISSION:
                    raise _storage_error(exc) from exc
                denied.append("SCAN")
        note_storage_condition(Fault.PERMISSION if denied else "ok")
        return tuple(denied)

    async def aclose(self) -> None:
        await close_client(self.client)

    @staticmethod
    def _check(product_id: str, quantity: int, *, low: int, high: int | None) -> None:
        """The store's own guard, whatever its caller checked: bad values would corrupt a line."""
        if not looks_like_product_id(product_id):  # else the line would be unreadable (``parse_line``)
            raise ValueError(f"not a product id: {product_id!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < low:
            raise ValueError(f"quantity must be an integer of at least {low}, not {quantity!r}")
        if high is not None and quantity > high:
            raise CartRejected("quantity_limit", 0)

    async def _run(self, script: Any, session_key: str, *args: Any, idempotent: bool = False) -> Cart:
        keys = [self.cart_key(session_key)]
        return _cart_of(await _call(lambda: script(keys=keys, args=list(args)), idempotent=idempotent))


def _cart_of(reply: Any) -> Cart:
    """A script's ``{status, payload}``: the cart (``replayed`` for an idempotent retry), else ``CartRejected``."""
    status, payload = reply
    if status == "replayed":
        return dataclasses.replace(_parse_cart(payload), replayed=True)
    if status != "ok":
        raise CartRejected(str(status), int(payload))
    return _parse_cart(payload)


def _now() -> int:
    return int(time.time())


async def _call(do: Callable[[], Awaitable[Any]], *, idempotent: bool) -> Any:
    """One Redis call; an idempotent one is retried on connection errors (``IDEMPOTENT_RETRY``)."""
    try:
        if idempotent:
            return await IDEMPOTENT_RETRY.call_with_retry(do, _note_failure, with_failure_count=True)
        return await do()
    except RedisError as exc:
        raise _storage_error(exc) from exc


async def _note_failure(error: Exception, failures: int) -> None:
    tries = IDEMPOTENT_RETRY.get_retries() + 1
    logger.info("Cart storage attempt %d of %d failed: %s: %s", failures, tries, type(error).__name__, error)


def _storage_error(exc: RedisError) -> CartStorageError:
    diagnosis: Diagnosis = diagnose(exc)
    logger.error("Cart storage failed (%s): %s: %s", diagnosis.fault, type(exc).__name__, exc)
    REDIS_ERRORS.labels(type(exc).__name__).inc()
    if diagnosis.fault is not Fault.DAMAGED:  # one cart's problem, not the store's
        note_storage_condition(diagnosis.fault)
    return CartStorageError(diagnosis.reason, maybe_applied=diagnosis.maybe_applied, kind=diagnosis.fault)


def _raise_unless_wrongtype(replies: list[Any]) -> None:
    """A pipeline's error replies: WRONGTYPE is one key's damage (the caller's to report), anything else fails."""
    for reply in replies:
        if isinstance(reply, ResponseError) and "WRONGTYPE" not in str(reply):
            raise _storage_error(reply)


def _idle(last_accessed: int | None, now: int) -> int | None:
    return None if last_accessed is None else max(0, now - last_accessed)


def _key_state(key: str, reply: list[Any], now: int) -> KeyState:
    """``INSPECT_SCRIPT``'s ``[type, fields]`` as a ``KeyState``: damaged if of another type, or if its stamp
    or any line is unreadable (the same ``parse_stamp`` and ``parse_line`` the tools read with)."""
    kind, flat = reply
    if kind == "none":  # deleted since SCAN saw it
        return KeyState(key)
    if kind != "hash":
        return KeyState(key, damage=f"not a hash but a {kind}")
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    stamp = fields.pop(LAST_ACCESSED_FIELD, None)
    last_accessed = parse_stamp(stamp, now)
    unreadable = sum(1 for field, value in fields.items() if parse_line(field, value) is None)
    damage = [DAMAGED_STAMP] if stamp is not None and last_accessed is None else []
    if unreadable:
        damage.append(damaged_lines_text(unreadable))
    return KeyState(key, len(fields), last_accessed, "; ".join(damage) or None)


def damaged_lines_text(count: int) -> str:
    return f"{count} unreadable line(s)"


def _idle_keys(states: list[KeyState], cutoff: int, damage: DamageReport) -> list[str]:
    """Keys of carts last used before ``cutoff``; damaged keys go to ``damage`` instead."""
    idle: list[str] = []
    for state in states:
        if state.damage:
            damage.note(state)
        elif state.last_accessed is not None and state.last_accessed < cutoff:
            idle.append(state.key)
    return idle


def _read_fields(detail: CartDetail, fields: dict[str, str], now: int) -> None:
    """A cart hash's fields into ``detail``: the stamp and every line, sorted by id; each unreadable line is
    marked ``damaged`` and shown raw, and ``detail.damaged`` says why the key is not a readable cart."""
    damage: list[str] = []
    unreadable = 0
    for name, value in sorted(fields.items()):
        if name == LAST_ACCESSED_FIELD:
            detail.last_accessed = parse_stamp(value, now)
            detail.idle_seconds = _idle(detail.last_accessed, now)
            if detail.last_accessed is None:
                damage.insert(0, DAMAGED_STAMP)
            continue
        line = parse_line(name, value)
        if line is None:
            unreadable += 1
            detail.lines.append({"product_id": name, "raw": value, "damaged": True})
        else:
            detail.lines.append(
                {"product_id": name, "quantity": line.quantity, "name": line.name, "price": f"{line.price:.2f}"}
            )
    if unreadable:
        damage.append(damaged_lines_text(unreadable))
    detail.damaged = "; ".join(damage) or None


def parse_stamp(value: str | None, now: int | None = None) -> int | None:
    """``_last_accessed`` as Unix seconds, or None when absent or unreadable: not a plain positive integer, or
    more than ``MAX_STAMP_AHEAD_SECONDS`` ahead of ``now`` (written by hand, or damaged)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    stamp = int(value)
    latest = (_now() if now is None else now) + MAX_STAMP_AHEAD_SECONDS
    return stamp if 0 < stamp <= latest else None


def parse_line(product_id: str, value: str) -> CartLine | None:
    """One stored line, or None when it is unreadable (written by hand, or damaged): the one definition.

    Readable: a field shaped like a product id, and ``{"q":N,"n":"…","p":"D.DD"}`` with N an integer of
    1..``MAX_STORED_QUANTITY``, a string name (cleaned of control characters and escape sequences before
    any client sees it) and a positive price of at most 12 integer digits and 2 places.
    """
    if not looks_like_product_id(product_id) or not value.startswith('{"q":'):
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"q", "n", "p"}:
        return None
    quantity, name, price = data["q"], data["n"], data["p"]
    if type(quantity) is not int or not 1 <= quantity <= MAX_STORED_QUANTITY or not isinstance(name, str):
        return None
    if not isinstance(price, str) or not _STORED_PRICE.fullmatch(price) or Decimal(price) <= 0:
        return None
    return CartLine(product_id, quantity, clean_text(name), Decimal(price))


def _parse_cart(flat: list[str]) -> Cart:
    """Turn HGETALL's flat field/value list into a cart; unreadable lines are counted and left out."""
    lines: list[CartLine] = []
    last_accessed: int | None = None
    damaged = 0
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        if field == LAST_ACCESSED_FIELD:
            last_accessed = parse_stamp(value)
            continue
        line = parse_line(field, value)
        if line is None:
            damaged += 1
        else:
            lines.append(line)
    if damaged:
        logger.warning("Left out %d unreadable cart line(s)", damaged)
    lines.sort(key=lambda line: (line.name, line.product_id))
    return Cart(lines=tuple(lines), last_accessed=last_accessed, damaged_lines=damaged)
