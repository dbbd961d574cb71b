"""Checking tool arguments, so every rejection is one sentence saying what to send instead.

The tools declare exact JSON schemas but accept any JSON value, and check it here: pydantic's
own messages are several lines of internals, which a chat assistant cannot act on.
"""

from __future__ import annotations

from typing import Any

from service.product_ids import looks_like_product_id

# The fixed bounds of tool arguments: the tools' JSON schemas and the checks below both read these.
# (The per-deployment quantity bound is the cart store's: WEFT_MAX_QUANTITY.)
MAX_QUERY_LENGTH = 200  # characters of search, category and store
MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 50
MAX_PRODUCT_ID_LENGTH = 200  # characters (conversation ids have their own limit in sessions.py)


class ArgumentError(ValueError):
    """A tool argument is unusable; the message is the sentence the client sees."""


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """An integer in ``low..high``; ``2``, ``2.0`` and ``"2"`` are accepted, ``true`` and ``2.5`` are not."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 12:
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise ArgumentError(f"{name} must be a whole number from {low} to {high}; got {json_kind(value)}.")
    return number


def short_text(value: Any, name: str, limit: int = MAX_QUERY_LENGTH) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string; got {json_kind(value)}.")
    if len(value) > limit:
        raise ArgumentError(f"{name} is {len(value)} characters long; send at most {limit}.")
    return value


def json_kind(value: Any) -> str:
    """What kind of JSON value was sent, never the value itself: an answer must not echo the caller's input."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number out of range" if isinstance(value, int) or value.is_integer() else "a fraction"
    kinds: dict[type, str] = {str: "other text", list: "a list", dict: "an object", type(None): "null"}
    return next((kind for cls, kind in kinds.items() if isinstance(value, cls)), "another kind of value")


def product_id_text(value: Any) -> str:
    """A string shaped like a product id (``store:i1234``); never a cart's own ``_last_accessed`` field."""
    raw = short_text(value, "product_id", MAX_PRODUCT_ID_LENGTH).strip()
    if not looks_like_product_id(raw):
        raise ArgumentError(
            "That is not a product id; send an id from search_products or the cart, like 'store:i1234'."
        )
    return raw
