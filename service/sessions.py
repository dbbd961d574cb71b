"""Which cart a call uses, and the Redis-safe key part that names it.

DESIGN.md fixes the order: the ``cart_id`` argument, then a signed-in shopper's account cart
(``WEFT_SIGNED_IN_CARTS=account``), then ``params._meta.sessionId``,
``params._meta.conversationId``, ``params._meta["openai/session"]``, then ``sessionId`` /
``conversationId`` in the JSON-RPC envelope's top-level ``_meta``, then the ``WEFT_SESSION_FALLBACK``
mode (``mint``: a call that adds creates a ``c-<32 hex>`` cart, any other call sees an empty cart and
writes nothing; ``default``: the shared cart; ``reject``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from service.cart_ids import CartIds, account_key, owner_of_key, subject_tag
from service.logs import session_var
from service.metrics import FALLBACK_CALLS

logger = logging.getLogger(__name__)

FALLBACK_SESSION_ID = "default"
FALLBACK_SOURCE = "fallback"
CART_ID_SOURCE = "cart_id"
MINTED_SOURCE = "minted"
NONE_SOURCE = "none"
ACCOUNT_SOURCE = "account"
Fallback = Literal["mint", "default", "reject"]
SignedInCarts = Literal["account", "conversation"]
PARAMS_META_KEYS = ("sessionId", "conversationId", "openai/session")
ENVELOPE_META_KEYS = ("sessionId", "conversationId")
MAX_SESSION_ID_LENGTH = 256  # characters of a conversation id (product ids have their own limit in arguments.py)
MAX_RAW_KEY_LENGTH = 100  # a raw key is a cart_id body: 3 + 1 + 100 + 22 MAC characters <= 128

_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
# Glob and hash-tag characters would let an id widen a SCAN pattern or move a key to another
# cluster slot; ids that start like a hashed key are hashed too, so the two spaces never meet,
# and so is an explicit "default", which must not open the shared fallback cart. Ids starting
# like a signed-in shopper's key (``u-``, see ``signed_in``) or a minted cart (``c-``) are hashed for the same reason.
_UNSAFE_IN_KEY = re.compile(r"[{}*?\[\]\\\s]|^[chu]-|^default$")


class SessionError(ValueError):
    """The caller's conversation id is unusable; the message tells the client what to send."""


@dataclass(frozen=True, slots=True)
class Session:
    """The cart of one call: the id as the caller sent it (a conversation id or a cart_id; "" when none),
    where it came from, its key part (None when the call names no cart and must write nothing),
    ``cart_id``, the id to hand back (None until the cart has a key), ``merge_from``: keys of a signed-in
    shopper's earlier carts (a guest cart, a per-conversation cart) to merge into this one first, whether the
    caller is signed in, and ``claimed``: what that merge moved on this call, if anything."""

    id: str
    source: str
    key: str | None
    cart_id: str | None = None
    merge_from: tuple[str, ...] = ()
    signed_in: bool = False
    claimed: Mapping[str, Any] | None = None  # what signing in merged into this cart on this call (``claimed``)

    @property
    def is_fallback(self) -> bool:
        return self.source == FALLBACK_SOURCE

    @property
    def is_shared(self) -> bool:
        """The shared fallback cart, reached by the fallback or by its cart_id (a conversation id "default" is
        hashed, so only these two reach this key): a view that passes the cart_id it shows must still say so."""
        return self.key == FALLBACK_SESSION_ID

    @property
    def short_id(self) -> str:
        return shorten(self.id)

    def named(self, cart_ids: CartIds) -> Session:
        """The same session with its ``cart_id`` issued (kept as sent when it came as the argument)."""
        if self.key is None or self.cart_id is not None:
            return self
        return replace(self, cart_id=cart_ids.issue(self.key))


def shorten(session_id: str) -> str:
    """What logs show of an id: enough to correlate lines, too little to act as the id."""
    return session_id if len(session_id) <= 12 else f"{session_id[:8]}…({len(session_id)})"


def session_key(session_id: str) -> str:
    """The part of the Redis key that names the cart; raw when safe, else ``h-`` + SHA-256."""
    if len(session_id) > MAX_RAW_KEY_LENGTH or _UNSAFE_IN_KEY.search(session_id):
        return "h-" + hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return session_id


def _validated(value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise SessionError(
            f"The conversation id in _meta[{source!r}] must be a string, not {type(value).__name__}; "
            f"send 1 to {MAX_SESSION_ID_LENGTH} visible ASCII characters."
        )
    if not 1 <= len(value) <= MAX_SESSION_ID_LENGTH or not _VISIBLE_ASCII.match(value):
        raise SessionError(
            f"The conversation id in _meta[{source!r}] must be 1 to {MAX_SESSION_ID_LENGTH} visible ASCII characters "
            "(no spaces or control characters); send a shorter or plainer id."
        )
    return value


def resolve_session(
    params_meta: Mapping[str, Any] | None,
    envelope_meta: Mapping[str, Any] | None,
    fallback: Fallback,
    *,
    mints: bool = False,
) -> Session:
    """Pick the conversation by DESIGN.md's order; raise ``SessionError`` on a bad id or a rejected fallback."""
    for meta, keys, label in ((params_meta, PARAMS_META_KEYS, ""), (envelope_meta, ENVELOPE_META_KEYS, "envelope:")):
        if not isinstance(meta, Mapping):
            continue
        for name in keys:
            if meta.get(name) is not None:
                session_id = _validated(meta[name], label + name)
                return Session(id=session_id, source=label + name, key=session_key(session_id))
    if fallback == "reject":
        raise SessionError(
            "No conversation id or cart_id was sent; pass the cart_id of this chat's latest cart answer, or put "
            'a conversation id in the request\'s _meta (for example "_meta": {"sessionId": "<conversation id>"}).'
        )
    if fallback == "mint":
        if mints:
            return Session(id="", source=MINTED_SOURCE, key=mint_key())
        return Session(id="", source=NONE_SOURCE, key=None)
    return Session(id=FALLBACK_SESSION_ID, source=FALLBACK_SOURCE, key=FALLBACK_SESSION_ID)


def mint_key() -> str:
    """A new cart's key part: ``c-`` + 32 hex of 16 random bytes (ids that start ``c-`` are always hashed)."""
    return "c-" + secrets.token_hex(16)


def signed_in(session: Session, tag: str, carts: SignedInCarts, cart_ids: CartIds) -> Session:
    """A signed-in shopper's cart for a call that named ``session`` (a conversation, a cart_id, or nothing), and
    the shopper's earlier carts to merge into it (``merge_from``, DESIGN "Signed-in and anonymous shoppers").

    ``account``: always the account cart ``u-<tag>``; what the call named, unless it is that cart, is merged
    into it: an anonymous (guest) cart, or the shopper's own per-conversation cart of ``conversation`` mode
    (an operator's switch keeps it). ``conversation``: ``u-<tag>.<key>``; an anonymous cart named by its
    conversation or cart_id is merged into the shopper's cart of that same key. Merge sources are only ever
    anonymous keys (never ``u-``: conversation ids that start so are hashed) or this shopper's own keys; the
    shared fallback cart is never one.
    """
    if session.key is None:  # a read under fallback mint, no conversation named: nothing to merge
        if carts == "account":
            return _named(session, account_key(tag), ACCOUNT_SOURCE, (), cart_ids)
        return session
    owner, is_account = owner_of_key(session.key)
    if owner is not None and owner != tag:  # cart_ids.open never yields one; a guard, not a path
        raise ValueError("a signed-in caller's session names another shopper's cart")
    guest = session.key if owner is None and session.source not in (FALLBACK_SOURCE, MINTED_SOURCE) else None
    if carts == "account":
        if is_account:
            return session.named(cart_ids)
        if session.source in (FALLBACK_SOURCE, MINTED_SOURCE):
            return _named(session, account_key(tag), ACCOUNT_SOURCE, (), cart_ids)
        own = session.key if owner is not None else f"u-{tag}.{session.key}"
        sources = (own, guest) if guest is not None else (own,)
        return _named(session, account_key(tag), ACCOUNT_SOURCE, sources, cart_ids)
    if owner is not None:  # the shopper's own cart (bound cart_id), used as it is
        return session.named(cart_ids)
    bound = f"u-{tag}.{session.key}"
    return _named(session, bound, session.source, (guest,) if guest is not None else (), cart_ids)


def _named(session: Session, key: str, source: str, merge_from: tuple[str, ...], cart_ids: CartIds) -> Session:
    return Session(session.id, source, key, cart_ids.issue(key), merge_from)


async def calling_session(
    params_meta: Mapping[str, Any] | None,
    http_request: Any,
    fallback: Fallback,
    subject: str | None = None,
    *,
    cart_ids: CartIds,
    cart_id: Any = None,
    mints: bool = False,
    signed_in_carts: SignedInCarts = "account",
) -> Session:
    """The cart of one tool call, logged: a WARNING for every shared-cart call, INFO naming the others.

    ``cart_id`` (the argument, when not None) wins and is opened for ``subject``: a bad one is a
    ``CartIdError``. ``params_meta`` is the SDK request context's ``meta`` (not ``getattr(params,
    '_meta')``, which the SDK never fills). The envelope's top-level ``_meta`` is dropped by the SDK's
    models, so it is read from the HTTP request's cached body, and only when ``params._meta`` names no
    conversation. ``subject`` (the bearer token's, when signed in) makes it the shopper's cart (``signed_in``).
    ``mints``: this call may create a cart (add_to_cart) under fallback ``mint``.
    """
    tag = None if subject is None else subject_tag(subject)
    if cart_id is not None:
        key = cart_ids.open(cart_id, tag)
        session = Session(id=cart_id, source=CART_ID_SOURCE, key=key, cart_id=cart_id)
    elif isinstance(params_meta, Mapping) and any(params_meta.get(name) is not None for name in PARAMS_META_KEYS):
        session = resolve_session(params_meta, None, fallback)
    else:
        envelope = await _envelope_meta(http_request)
        account_first = tag is not None and signed_in_carts == "account"  # step 2 comes before any fallback
        session = resolve_session(None, envelope, "mint" if account_first else fallback, mints=mints)
    if tag is None:
        session = session.named(cart_ids)
    else:
        session = replace(signed_in(session, tag, signed_in_carts, cart_ids), signed_in=True)
    named_by_id = session.source in (CART_ID_SOURCE, MINTED_SOURCE, ACCOUNT_SOURCE)
    session_var.set(shorten(session.cart_id or "") if named_by_id else session.short_id)  # for JSON log lines
    if session.is_fallback:
        FALLBACK_CALLS.inc()
        logger.warning("No conversation id in _meta: using the shared %r cart", session.id)
    elif session.source == NONE_SOURCE:
        logger.info("No cart_id or conversation id: answering as for an empty cart, writing nothing")
    elif named_by_id:
        logger.info("Using cart %s (from %s)", shorten(session.cart_id or ""), session.source)
    else:
        logger.info("Using session ID: %s (from %s)", session.short_id, session.source)
    return session


async def conversation_cart_id(
    params_meta: Mapping[str, Any] | None,
    http_request: Any,
    subject: str | None,
    cart_ids: CartIds,
    signed_in_carts: SignedInCarts = "account",
) -> str | None:
    """The cart_id of the conversation a read-only call names (search_products), or None: never a fallback,
    never an error (a call that only searches must not fail over its conversation id). A signed-in shopper's
    account cart is named by every call."""
    tag = None if subject is None else subject_tag(subject)
    try:
        if isinstance(params_meta, Mapping) and any(params_meta.get(n) is not None for n in PARAMS_META_KEYS):
            found = resolve_session(params_meta, None, "reject")
        else:
            found = resolve_session(None, await _envelope_meta(http_request), "reject")
    except SessionError:
        if tag is None or signed_in_carts != "account":
            return None
        found = Session(id="", source=NONE_SOURCE, key=None)
    return found.named(cart_ids).cart_id if tag is None else signed_in(found, tag, signed_in_carts, cart_ids).cart_id


async def _envelope_meta(http_request: Any) -> Mapping[str, Any] | None:
    read_body = getattr(http_request, "body", None)
    if read_body is None:  # not over HTTP (in-process clients)
        return None
    try:
        message = json.loads(await read_body())
    except (ValueError, RuntimeError):
        return None
    meta = message.get("_meta") if isinstance(message, dict) else None
    return meta if isinstance(meta, Mapping) else None
