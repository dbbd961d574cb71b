"""Which conversation is calling, and the Redis-safe key part derived from its id.

DESIGN.md fixes the order: ``params._meta.sessionId``, ``params._meta.conversationId``,
``params._meta["openai/session"]``, then ``sessionId`` / ``conversationId`` in the JSON-RPC
envelope's top-level ``_meta``, then the ``WEFT_SESSION_FALLBACK`` mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.logs import session_var
from service.metrics import FALLBACK_CALLS

logger = logging.getLogger(__name__)

FALLBACK_SESSION_ID = "default"
FALLBACK_SOURCE = "fallback"
PARAMS_META_KEYS = ("sessionId", "conversationId", "openai/session")
ENVELOPE_META_KEYS = ("sessionId", "conversationId")
MAX_SESSION_ID_LENGTH = 256  # characters of a conversation id (product ids have their own limit in arguments.py)
MAX_RAW_KEY_LENGTH = 128

_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
# Glob and hash-tag characters would let an id widen a SCAN pattern or move a key to another
# cluster slot; ids that start like a hashed key are hashed too, so the two spaces never meet,
# and so is an explicit "default", which must not open the shared fallback cart. Ids starting
# like a user-scoped key (``u-``, see ``scoped``) are hashed for the same reason.
_UNSAFE_IN_KEY = re.compile(r"[{}*?\[\]\\\s]|^[hu]-|^default$")
SUBJECT_TAG_DIGITS = 16


class SessionError(ValueError):
    """The caller's conversation id is unusable; the message tells the client what to send."""


@dataclass(frozen=True, slots=True)
class Session:
    """One conversation: the id as the caller sent it, where it came from, and its key part."""

    id: str
    source: str
    key: str

    @property
    def is_fallback(self) -> bool:
        return self.source == FALLBACK_SOURCE

    @property
    def short_id(self) -> str:
        return shorten(self.id)


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
    fallback: Literal["default", "reject"],
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
            "No conversation id was sent; put one in the request's _meta "
            '(for example "_meta": {"sessionId": "<conversation id>"}) so this chat gets its own cart.'
        )
    return Session(id=FALLBACK_SESSION_ID, source=FALLBACK_SOURCE, key=FALLBACK_SESSION_ID)


def scoped(session: Session, subject: str | None) -> Session:
    """With authentication on, a cart belongs to a user: ``u-<16 hex of SHA-256(subject)>.<key>``.

    One conversation id under two users is two carts; the subject itself (an email, say)
    never appears in a key, and the key stays inside one ``{...}`` hash tag.
    """
    if subject is None:
        return session
    tag = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:SUBJECT_TAG_DIGITS]
    return Session(id=session.id, source=session.source, key=f"u-{tag}.{session.key}")


async def calling_session(
    params_meta: Mapping[str, Any] | None,
    http_request: Any,
    fallback: Literal["default", "reject"],
    subject: str | None = None,
) -> Session:
    """The session of one tool call, logged: a WARNING for every fallback call, INFO naming the others.

    ``params_meta`` is the SDK request context's ``meta`` (not ``getattr(params, '_meta')``,
    which the SDK never fills). The envelope's top-level
    ``_meta`` is dropped by the SDK's models, so it is read from the HTTP request's cached
    body, and only when ``params._meta`` names no conversation. ``subject`` (the bearer
    token's, when auth is on) scopes the key to its user.
    """
    if isinstance(params_meta, Mapping) and any(params_meta.get(name) is not None for name in PARAMS_META_KEYS):
        session = resolve_session(params_meta, None, fallback)
    else:
        session = resolve_session(None, await _envelope_meta(http_request), fallback)
    session = scoped(session, subject)
    session_var.set(session.short_id)  # for JSON log lines of the rest of this call
    if session.is_fallback:
        FALLBACK_CALLS.inc()
        logger.warning("No conversation id in _meta: using the shared %r cart", session.id)
    else:
        logger.info("Using session ID: %s (from %s)", session.short_id, session.source)
    return session


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
