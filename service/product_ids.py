"""The shape of a product id (``store:i1234``): one owner for the tools' argument check and the cart store's
reading of stored lines, so a line under a field of another shape is never shown."""

from __future__ import annotations

import re

# Store ids are ASCII by rule; the item part is the catalog's own (i<digits>, h<hex>, a position): visible ASCII.
PRODUCT_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[!-9;-~]+$")


def looks_like_product_id(text: str) -> bool:
    """``store:item`` in visible ASCII: no whitespace, control character, escape sequence or undecodable byte
    (U+FFFD), and never ``_last_accessed``."""
    return bool(PRODUCT_ID_SHAPE.match(text)) and text.isprintable()
