"""Idempotent retries: ``params._meta["idempotency-key"]`` on a changing call.

The key is checked here (1..128 visible ASCII characters; anything else is one ``ArgumentError``
sentence and nothing changes). The cart scripts take the record's key and the change's fingerprint:
the same key with the same change answers the cart as it is (``replayed``), with another change it is
refused, and only a change that succeeded is recorded, in the same script (one round trip).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.arguments import ArgumentError

META_KEY = "idempotency-key"
MAX_KEY_LENGTH = 128
DIGEST_CHARS = 32
_VISIBLE_ASCII = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$")
BAD_KEY = (
    f'_meta["{META_KEY}"] must be a string of 1 to {MAX_KEY_LENGTH} visible ASCII characters (no spaces); '
    "send a fresh one, like a UUID, for each new change."
)
CONFLICT = "That idempotency key was already used for a different change; use a new key for a new change."


@dataclass(frozen=True, slots=True)
class IdempotentChange:
    """One keyed change: ``digest`` names its record (32 hex of SHA-256 of the key, never the key itself),
    ``fingerprint`` (32 hex) is what the change was, to tell a retry from a reuse of the key."""

    digest: str
    fingerprint: str


def idempotency_key(params_meta: Mapping[str, Any] | None) -> str | None:
    """The call's idempotency key, or None when it sent none; ``ArgumentError`` for a key of another shape."""
    if not isinstance(params_meta, Mapping) or params_meta.get(META_KEY) is None:
        return None
    key = params_meta[META_KEY]
    if not isinstance(key, str) or not _VISIBLE_ASCII.match(key):
        raise ArgumentError(BAD_KEY)
    return key


def fingerprint(tool: str, arguments: Mapping[str, Any]) -> str:
    """32 hex of SHA-256 of the canonical JSON of the tool and its parsed arguments (the cart key included)."""
    canonical = json.dumps([tool, dict(arguments)], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:DIGEST_CHARS]


def keyed_change(key: str | None, tool: str, arguments: Mapping[str, Any]) -> IdempotentChange | None:
    """What a changing call hands the cart store: None without a key."""
    if key is None:
        return None
    digest = hashlib.sha256(key.encode("ascii")).hexdigest()[:DIGEST_CHARS]
    return IdempotentChange(digest=digest, fingerprint=fingerprint(tool, arguments))
