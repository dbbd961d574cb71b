"""Transfer codes: short one-time codes a person types to move a cart's lines to another chat.

A code is 8 characters of ``BCDFGHJKLMNPQRSTVWXZ`` (RFC 8628's set: no vowels, so no words, and no
digits to confuse with letters), drawn with ``secrets`` and shown as two groups of four, ``BCDF-GHJK``.
20^8 codes is about 34.5 bits: guessable by brute force, so claims are rate-limited and Redis only ever
holds a keyed hash (HMAC-SHA256 with the server secret): a dump of Redis does not reveal live codes, and
a plain hash of so small a space could be reversed in seconds. Pure functions: no Redis, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
CODE_LENGTH = 8
GROUP = 4
HASH_HEX_DIGITS = 32  # 128 bits of the HMAC: plenty for a key name, and never the code
_SHAPE = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")
_IGNORED = re.compile(r"[\s\-\u2010-\u2015\u2212]+")  # any whitespace; hyphen-minus, Unicode dashes, minus
MAX_INPUT_LENGTH = 64  # longer input is not a code whatever it holds; never normalized


class CodeShapeError(ValueError):
    """The text cannot be a transfer code; the message is the one sentence a caller shows."""

    def __init__(self) -> None:
        super().__init__(
            f"A transfer code is {CODE_LENGTH} letters like BCDF-GHJK, from {ALPHABET}; "
            "check the code as share_cart gave it and try again."
        )


def new_code() -> str:
    """A fresh code, normalized (8 letters, no dash)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def display(code: str) -> str:
    """``BCDFGHJK`` -> ``BCDF-GHJK``: how a person reads it."""
    return f"{code[:GROUP]}-{code[GROUP:]}"


def normalize(text: object) -> str:
    """What a person typed -> the code: case, spaces, dashes and any whitespace ignored.

    ``CodeShapeError`` when the result is not 8 letters of the alphabet (not a string, too long,
    other letters or digits): checked before anything touches Redis.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_LENGTH:
        raise CodeShapeError()
    code = _IGNORED.sub("", text)
    if not code.isascii():  # before upper-casing: "ß".upper() is "SS"
        raise CodeShapeError()
    code = code.upper()
    if not _SHAPE.fullmatch(code):
        raise CodeShapeError()
    return code


def code_hash(secret: bytes, code: str) -> str:
    """The keyed hash Redis keeps instead of the code: 32 hex of HMAC-SHA256(secret, "code:" + code).

    ``code`` must be normalized (``normalize``), so every way of typing one code hashes alike.
    """
    if not secret:
        raise ValueError("a transfer code hash needs the server secret")
    digest = hmac.new(secret, f"code:{code}".encode("ascii"), hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_DIGITS]


def guess_odds(live_codes: int, guesses: int) -> float:
    """The chance that at least one of ``guesses`` random guesses hits any of ``live_codes`` codes."""
    space = len(ALPHABET) ** CODE_LENGTH
    per_guess = min(1.0, live_codes / space)
    miss: float = (1.0 - per_guess) ** guesses
    return 1.0 - miss
