"""Reading a scraped price exactly as the shop wrote it, or not at all.

A price that cannot be read exactly (an exponent, a third decimal, another script's digits, a
sign, a range, an ambiguous grouping, an absurd size) is no price: the product is listed as
unavailable. Guessing would sell something at a price the shop never asked.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Any

from service.catalog_json import JSONNumber

MAX_INTEGER_DIGITS = 12  # up to 999,999,999,999.99: beyond any shop's price, within Decimal's exact range
CENT = Decimal("0.01")
THOUSANDS_SEPARATORS = ",. '\u00a0\u202f\u2019"  # comma, dot, space, NBSP, narrow NBSP, apostrophes
DECIMAL_SEPARATORS = ".,"
_DANGLING = {".", ",", "'", "\u2019"}  # next to the digits they would be part of the number
# A JSON number's text (service.catalog_json keeps it): read only without sign and exponent, and with
# any decimals past the second all zeros (24.400 is 24.40; 19.999999999999999 is no price).
_JSON_NUMBER = re.compile(r"(?P<whole>0|[1-9][0-9]*)(?:\.(?P<cents>[0-9]{1,2})(?P<rest>[0-9]*))?")
# Currency words shops write next to a price, besides symbols (Unicode Sc) and 3-letter codes (ILS, EUR).
_WORDS = """ש"ח ש״ח שח ש'ח ש׳ח שקל שקלים NIS Rs Rs. kr kr. zł Kč Ft lei руб руб. р. лв лв. Fr. SFr. din Rp RM TL Dhs
R$ US$ C$ A$ NZ$ HK$ S$ MX$"""
CURRENCY_WORDS = frozenset(word.casefold() for word in _WORDS.split())

# "1299", "24.4", "24,40": digits, then at most one decimal separator with 1-2 digits.
_PLAIN = re.compile(r"(?P<whole>[0-9]+)(?:[.,](?P<cents>[0-9]{1,2}))?")
# "1,299.90", "1.299,90", "1 299,90", "1'299": 1-3 digits (no leading zero), groups of exactly 3
# with one thousands separator throughout, then optionally a different decimal separator and 1-2 digits.
_GROUPED = re.compile(
    r"(?P<whole>[1-9][0-9]{0,2}(?:(?P<sep>[,. '\u00a0\u202f\u2019])[0-9]{3})(?:(?P=sep)[0-9]{3})*)"
    r"(?:(?P<dec>[.,])(?P<cents>[0-9]{1,2}))?"
)


def parse_price(raw: Any) -> Decimal | None:
    """The price ``raw`` states, with two places; ``None`` when it states none exactly or it is not above zero.

    JSON numbers (``JSONNumber``, their literal text): no exponent, at most two decimals unless the
    rest are zeros. Python ints are exact; floats must be finite, shown without an exponent and with
    at most two decimals. Text: ASCII digits only, optional currency text (``currency_text``) before
    or after, and either a plain number or one grouped in thousands as shops write them.
    """
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, JSONNumber):
        return _from_json_number(raw.text)
    if isinstance(raw, int):
        return _checked(Decimal(raw))
    if isinstance(raw, float):
        shown = repr(raw)
        if not math.isfinite(raw) or "e" in shown:
            return None
        return _checked(Decimal(shown))
    if isinstance(raw, str):
        return _from_text(raw)
    return None


def is_missing(raw: Any) -> bool:
    """No price given at all (as opposed to one given but unreadable)."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _from_json_number(text: str) -> Decimal | None:
    match = _JSON_NUMBER.fullmatch(text)
    if match is None or (match["rest"] and match["rest"].strip("0")) or len(match["whole"]) > MAX_INTEGER_DIGITS:
        return None  # a sign, an exponent, NaN/Infinity, a nonzero third decimal, an absurd size
    return _checked(Decimal(f"{match['whole']}.{match['cents'] or '0'}"))


def _from_text(raw: str) -> Decimal | None:
    text = raw.strip()
    numeric = [i for i, ch in enumerate(text) if ch.isnumeric()]
    if not numeric:
        return None
    start, end = numeric[0], numeric[-1] + 1
    before, number, after = text[:start], text[start:end], text[end:]
    if not (is_currency_text(before, touching_end=True) and is_currency_text(after, touching_end=False)):
        return None
    if before[-1:] in _DANGLING or after[:1] in _DANGLING:
        return None  # ".5", "5.", "24.40," : a separator with nothing on one side
    match = _GROUPED.fullmatch(number) or _PLAIN.fullmatch(number)
    if match is None or (match.groupdict().get("dec") and match["dec"] == match["sep"]):
        return None
    whole = re.sub(r"[^0-9]", "", match["whole"])
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        return None
    return _checked(Decimal(f"{whole}.{match['cents'] or '0'}"))


def is_currency_text(text: str, *, touching_end: bool) -> bool:
    """Nothing, or one currency: symbols (``₪``, ``$``), a 3-letter code (``ILS``) or a word in ``CURRENCY_WORDS``.

    ``text`` is what stands before the number (``touching_end``: its end meets the digits) or after it.
    Only a symbol may touch the digits (``₪24``, ``R$24``); a letter touching them (``12.5k``, ``5kg``,
    ``NIS24``) or any other word (``from``, ``per kg``) means the text is not a plain price.
    """
    word = text.strip()
    if not word:
        return True
    touching = text[-1:] if touching_end else text[:1]
    if not touching.isspace() and unicodedata.category(touching) != "Sc":
        return False
    return (
        all(unicodedata.category(ch) == "Sc" for ch in word)
        or (len(word) == 3 and word.isascii() and word.isalpha())
        or word.casefold() in CURRENCY_WORDS
    )


def _checked(price: Decimal) -> Decimal | None:
    """Above zero, at most two decimals, at most ``MAX_INTEGER_DIGITS`` before the point."""
    if not price.is_finite() or price <= 0 or price.as_tuple().exponent < -2:  # type: ignore[operator]
        return None
    if price >= Decimal(10) ** MAX_INTEGER_DIGITS:
        return None
    return price.quantize(CENT)
