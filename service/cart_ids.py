"""cart_ids: the signed, opaque handle that names one cart from any conversation, device or widget.

``wc_`` + kind (1 character) + body + MAC (22 characters: base64url of the first 16 bytes of
HMAC-SHA256(secret, ``"weft-cart-id/1\\0" + kind + "\\0" + body + "\\0" + owner_tag``)).

Kinds: ``c`` a minted cart (``c-<32 hex>``; body = 22-character base64url of its 16 bytes), ``h`` a hashed
conversation key (``h-<32 hex>``, the same body), ``r`` a raw conversation key (body = the key as it is).
An upper-case kind is the same inner key bound to a signed-in shopper: the session key is
``u-<owner tag>.<inner>`` and the owner tag is recomputed from the *caller's* subject, so another shopper's
id never verifies. No Redis: opening is a pure function of the secrets and the string. A cart_id never
expires; an expired cart is an empty cart.

Kind ``A`` (always upper case, empty body) is a signed-in shopper's account cart, the key ``u-<owner tag>``
itself (``WEFT_SIGNED_IN_CARTS=account``): like every bound id, it opens only for the shopper it names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

PREFIX = "wc_"
MAX_CART_ID_LENGTH = 128
MAC_BYTES = 16
MAC_CHARS = 22  # base64url of 16 bytes, unpadded
MAX_RAW_BODY = 100  # sessions.MAX_RAW_KEY_LENGTH: 3 + 1 + 100 + 22 = 126 <= 128
SUBJECT_TAG_DIGITS = 16
DOMAIN = b"weft-cart-id/1\0"
INVALID_CART_ID = (
    "That cart_id is not valid here; pass the cart_id from this chat's latest cart answer, or leave cart_id out."
)

_DIGEST_KEY = re.compile(r"^([ch])-([0-9a-f]{32})$")
_RAW_BODY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_RAW_BODY}}}$")
_RAW_FORBIDDEN = re.compile(r"[{}*?\[\]\\]")
_B64_BODY = re.compile(r"^[A-Za-z0-9_-]{22}$")
_SCOPED_KEY = re.compile(rf"^u-([0-9a-f]{{{SUBJECT_TAG_DIGITS}}})\.(.+)$")
_ACCOUNT_KEY = re.compile(rf"^u-([0-9a-f]{{{SUBJECT_TAG_DIGITS}}})$")
ACCOUNT_KIND = "A"


class CartIdError(ValueError):
    """A cart_id that does not open here: malformed, forged, or another shopper's; always one sentence."""

    def __init__(self) -> None:
        super().__init__(INVALID_CART_ID)


def subject_tag(subject: str) -> str:
    """The 16 hex characters of SHA-256(subject) that scope a signed-in shopper's keys (``u-<tag>.``)."""
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:SUBJECT_TAG_DIGITS]


def account_key(tag: str) -> str:
    """The session key of a signed-in shopper's account cart: ``u-<subject tag>`` (no conversation part)."""
    return f"u-{tag}"


def owner_of_key(session_key: str) -> tuple[str | None, bool]:
    """(the subject tag a key is bound to, or None for an anonymous cart; whether it is the account cart)."""
    account = _ACCOUNT_KEY.match(session_key)
    if account:
        return account.group(1), True
    scoped = _SCOPED_KEY.match(session_key)
    return (scoped.group(1) if scoped else None), False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class CartIds:
    """Issues and opens cart_ids with the current secret; opening also tries each previous secret (rotation)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        if not secret:
            raise ValueError("a cart_id secret must not be empty")
        self._secret = secret
        self._all = (secret, *previous)

    @property
    def secret(self) -> bytes:
        """The current secret: transfer codes are hashed with it (never with a previous one: a code lasts
        minutes, so a rotation simply ends the live ones)."""
        return self._secret

    def _mac(self, secret: bytes, kind: str, body: str, owner_tag: str) -> str:
        message = DOMAIN + f"{kind}\0{body}\0{owner_tag}".encode("ascii")
        return _b64(hmac.digest(secret, message, "sha256")[:MAC_BYTES])  # one-shot: the C path, same bytes

    def issue(self, session_key: str) -> str:
        """The cart_id of a session key (``c-``/``h-``/raw, optionally ``u-<tag>.``-scoped, or ``u-<tag>``)."""
        account = _ACCOUNT_KEY.match(session_key)
        if account:
            owner = account.group(1)
            return PREFIX + ACCOUNT_KIND + self._mac(self._secret, ACCOUNT_KIND, "", owner)
        owner_tag, inner = "", session_key
        scoped = _SCOPED_KEY.match(session_key)
        if scoped:
            owner_tag, inner = scoped.group(1), scoped.group(2)
        digest = _DIGEST_KEY.match(inner)
        if digest:
            kind, body = digest.group(1), _b64(bytes.fromhex(digest.group(2)))
        elif _RAW_BODY.match(inner) and not _RAW_FORBIDDEN.search(inner):
            kind, body = "r", inner
        else:
            raise ValueError("this session key cannot be named by a cart_id")
        if owner_tag:
            kind = kind.upper()
        return PREFIX + kind + body + self._mac(self._secret, kind, body, owner_tag)

    def open(self, cart_id: object, caller_tag: str | None) -> str:
        """The session key a cart_id names for this caller (``caller_tag``: ``subject_tag`` or None when
        anonymous); ``CartIdError`` for anything else, the same sentence whatever the reason."""
        if not isinstance(cart_id, str) or not cart_id.isascii() or len(cart_id) > MAX_CART_ID_LENGTH:
            raise CartIdError()
        if not cart_id.startswith(PREFIX) or len(cart_id) < len(PREFIX) + 1 + MAC_CHARS:
            raise CartIdError()
        kind, body, mac = cart_id[3], cart_id[4:-MAC_CHARS], cart_id[-MAC_CHARS:]
        if kind == ACCOUNT_KIND:
            if body or caller_tag is None:
                raise CartIdError()
            self._verify(kind, body, caller_tag, mac)
            return account_key(caller_tag)
        inner = self._inner_key(kind.lower(), body)
        owner_tag = ""
        if kind.isupper():
            if caller_tag is None:
                raise CartIdError()
            owner_tag = caller_tag
        elif kind not in "chr":
            raise CartIdError()
        self._verify(kind, body, owner_tag, mac)
        return f"u-{owner_tag}.{inner}" if owner_tag else inner

    def _verify(self, kind: str, body: str, owner_tag: str, mac: str) -> None:
        ok = False
        for secret in self._all:  # every secret is tried: the time taken does not tell which one matched
            ok |= hmac.compare_digest(self._mac(secret, kind, body, owner_tag), mac)
        if not ok:
            raise CartIdError()

    @staticmethod
    def _inner_key(kind: str, body: str) -> str:
        if kind in ("c", "h"):
            if not _B64_BODY.match(body):
                raise CartIdError()
            try:
                raw = base64.urlsafe_b64decode(body + "==")
            except (binascii.Error, ValueError):
                raise CartIdError() from None
            if len(raw) != 16 or _b64(raw) != body:
                raise CartIdError()
            return f"{kind}-{raw.hex()}"
        if kind == "r" and _RAW_BODY.match(body) and not _RAW_FORBIDDEN.search(body):
            return body
        raise CartIdError()
