"""The shape of a product id (``store:i1234``): one owner for the tools' argument check and the cart store's
reading of stored lines, so a line under a field of another shape is never shown."""

from __future__ import annotations

import re

PRODUCT_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*:[^\s:]+$")


def looks_like_product_id(text: str) -> bool:
    """``store:item`` with no whitespace, control character or escape sequence (never ``_last_accessed``)."""
    return bool(PRODUCT_ID_SHAPE.match(text)) and text.isprintable()
