"""The cart store: one Redis hash per conversation, changed only by Lua scripts.

Layout (DESIGN.md): ``<prefix>:cart:{<session-key>}`` is a HASH with one field per line,
``<product_id>`` -> ``{"q":2,"n":"…","p":"24.40"}`` (quantity, name and price when added; one-letter
keys because every byte of a line counts toward the listpack limit), plus ``_last_accessed``.
Every cart call is one round trip: a script registered once and called by SHA does the
read-modify-write, the ``_last_accessed`` stamp and the sliding TTL atomically, so two
workers adding to one cart at once lose nothing. A cart with no lines has no key.

The same class serves the embedded store (fakeredis in this process) and a real Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.cart_count import CartCount, CartCounter
from service.metrics import REDIS_ERRORS, note_storage_condition
from service.redis_clients import close_client, open_client
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


class CartStorageError(RuntimeError):
    """A cart storage call failed; ``kind`` says why (``service.storage_faults.Fault``).

    ``maybe_applied`` is true when the command was sent but no answer came: the script may
    have run, so a change that is not idempotent must not be repeated blindly.
    """

    def __init__(self, message: str, *, maybe_applied: bool, kind: str = Fault.UNREACHABLE) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.kind = Fault(kind)


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

    @property
    def is_empty(self) -> bool:
        return not self.lines


EMPTY_CART = Cart(lines=(), last_accessed=None)


def cart_key(key_prefix: str, session_key: str) -> str:
    """``<prefix>:cart:{<session-key>}``: the braces are the cluster hash tag that keeps a cart in one slot."""
    return f"{key_prefix}:cart:{{{session_key}}}"


def line_value_tail(name: str, price: Decimal) -> str:
    """The part of a line's JSON after the quantity; the script prepends ``{"q":N,``."""
    return json.dumps({"n": name, "p": f"{price:.2f}"}, ensure_ascii=False, separators=(",", ":"))[1:]


class CartStore:
    """Carts over the Redis protocol; each public coroutine is one script call (or one DEL)."""

    # Shared Lua: stamp the access, slide the TTL, return the whole cart. The stamp and the TTL use
    # pcall: after a script's change they must not fail halfway, and when Redis is out of memory a
    # read still answers with the stamp left as it was. Every script's first command is a hash read,
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
local function quantity_of(value)
  return tonumber(string.match(value, '^{"q":(%d+)')) or 0
end
"""

    # KEYS[1] cart; ARGV: product_id, delta, value tail, max quantity, max lines, ttl, now
    ADD_SCRIPT = (
        _TOUCH
        + """
local key, field, delta = KEYS[1], ARGV[1], tonumber(ARGV[2])
local max_quantity, max_lines = tonumber(ARGV[4]), tonumber(ARGV[5])
local current = redis.call('HGET', key, field)
local quantity = delta
if current then
  quantity = quantity_of(current) + delta
  if quantity > max_quantity then return {'quantity_limit', quantity - delta} end
else
  local lines = line_count(key)
  if lines >= max_lines then return {'line_limit', lines} end
  if quantity > max_quantity then return {'quantity_limit', 0} end
end
redis.call('HSET', key, field, '{"q":' .. quantity .. ',' .. ARGV[3])
return {'ok', touch(key, ARGV[7], tonumber(ARGV[6]))}
"""
    )

    # KEYS[1] cart; ARGV: product_id, quantity (0 removes), ttl, now
    SET_QUANTITY_SCRIPT = (
        _TOUCH
        + """
local key, field, quantity = KEYS[1], ARGV[1], tonumber(ARGV[2])
local current = redis.call('HGET', key, field)
if not current then return {'not_in_cart', 0} end
if quantity == 0 then
  redis.call('HDEL', key, field)
  if line_count(key) == 0 then
    redis.pcall('DEL', key)
    return {'ok', {}}
  end
else
  redis.call('HSET', key, field, (string.gsub(current, '^{"q":%d+', '{"q":' .. quantity, 1)))
end
return {'ok', touch(key, ARGV[4], tonumber(ARGV[3]))}
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

    # KEYS[1] the probe key (no cart). What a cart write needs: EVALSHA, write rights on a key of the
    # cart shape, and memory (Redis refuses a script's first write under maxmemory). Leaves nothing.
    PROBE_SCRIPT = """
redis.call('HSET', KEYS[1], '_probe', '1')
redis.call('DEL', KEYS[1])
return 'ok'
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
    ) -> None:
        self.client = client
        self.backend = backend
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.max_quantity = max_quantity
        self.max_lines = max_lines
        self._add = client.register_script(self.ADD_SCRIPT)
        self._set_quantity = client.register_script(self.SET_QUANTITY_SCRIPT)
        self._view = client.register_script(self.VIEW_SCRIPT)
        self._probe = client.register_script(self.PROBE_SCRIPT)
        self.cart_counter = CartCounter(self.count_carts)

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

            return cls(fakeredis.FakeAsyncRedis(decode_responses=True), backend="embedded", **options)
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
        )

    def cart_key(self, session_key: str) -> str:
        return cart_key(self.key_prefix, session_key)

    @property
    def cart_pattern(self) -> str:
        """``<prefix>:cart:{*``: with ``is_cart_key`` exactly this deployment's carts, never those of a
        deployment whose prefix starts like ours (``weft`` and ``weft:cart:eu``)."""
        return f"{self.key_prefix}:cart:{{*"

    def is_cart_key(self, key: str) -> bool:
        """Prefixes and session keys hold no braces, so ``<prefix>:cart:{...}`` ending in ``}`` is ours."""
        return key.endswith("}") and "}" not in key[len(self.key_prefix) + 7 : -1]

    async def view(self, session_key: str) -> Cart:
        return await self._run(self._view, session_key, self.ttl_seconds, _now(), idempotent=True)

    async def add(self, session_key: str, product_id: str, quantity: int, name: str, price: Decimal) -> Cart:
        """Add ``quantity`` to the line, creating it (with name and price) when new."""
        self._check(product_id, quantity, low=1, high=None)  # the script enforces the line's maximum
        tail = line_value_tail(name, price)
        return await self._run(
            self._add, session_key, product_id, quantity, tail, self.max_quantity, self.max_lines,
            self.ttl_seconds, _now(),
        )  # fmt: skip

    async def set_quantity(self, session_key: str, product_id: str, quantity: int) -> Cart:
        """Set an existing line's quantity; 0 removes the line (and the key with the last one)."""
        self._check(product_id, quantity, low=0, high=self.max_quantity)
        return await self._run(
            self._set_quantity, session_key, product_id, quantity, self.ttl_seconds, _now(), idempotent=True
        )

    async def remove(self, session_key: str, product_id: str) -> Cart:
        return await self.set_quantity(session_key, product_id, 0)

    async def clear(self, session_key: str) -> Cart:
        await _call(lambda: self.client.delete(self.cart_key(session_key)), idempotent=True)
        return EMPTY_CART

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

        return await _call(count, idempotent=True)

    async def counted_carts(self) -> CartCount:
        """``count_carts`` as seen within the last few seconds: one SCAN sweep per worker serves a burst."""
        return await self.cart_counter.get()

    async def ping(self) -> None:
        await _call(self.client.ping, idempotent=True)

    async def probe(self) -> None:
        """What readiness checks: a cart write through the tools' path (a ``CartStorageError`` says why not)."""
        keys = [self.cart_key(PROBE_SESSION_KEY)]
        await _call(lambda: self._probe(keys=keys, args=[]), idempotent=True)
        note_storage_condition("ok")

    async def aclose(self) -> None:
        await close_client(self.client)

    @staticmethod
    def _check(product_id: str, quantity: int, *, low: int, high: int | None) -> None:
        """The store's own guard, whatever its caller checked: bad values would corrupt a line."""
        if not product_id or product_id.startswith("_"):
            raise ValueError(f"not a product id: {product_id!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < low:
            raise ValueError(f"quantity must be an integer of at least {low}, not {quantity!r}")
        if high is not None and quantity > high:
            raise CartRejected("quantity_limit", 0)

    async def _run(self, script: Any, session_key: str, *args: Any, idempotent: bool = False) -> Cart:
        keys = [self.cart_key(session_key)]
        status, payload = await _call(lambda: script(keys=keys, args=list(args)), idempotent=idempotent)
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


def parse_stamp(value: str | None) -> int | None:
    """``_last_accessed`` as Unix seconds, or None when absent or unreadable (written by hand, or damaged)."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_line(product_id: str, value: str) -> CartLine | None:
    """One stored line, or None when it is unreadable (written by hand, or damaged)."""
    try:
        data = json.loads(value)
        return CartLine(product_id, int(data["q"]), str(data["n"]), Decimal(data["p"]))
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return None


def _parse_cart(flat: list[str]) -> Cart:
    """Turn HGETALL's flat field/value list into a cart; an unreadable line is skipped, not fatal."""
    lines: list[CartLine] = []
    last_accessed: int | None = None
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        if field == LAST_ACCESSED_FIELD:
            last_accessed = parse_stamp(value)
            continue
        line = parse_line(field, value)
        if line is None:
            logger.warning("Skipping unreadable cart line %r", field)
        else:
            lines.append(line)
    lines.sort(key=lambda line: (line.name, line.product_id))
    return Cart(lines=tuple(lines), last_accessed=last_accessed)
