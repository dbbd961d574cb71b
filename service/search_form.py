"""The search form of text: what query words and catalog text are both turned into before they are compared.

A module of its own so that ``service.catalog`` (which searches) and ``service.search_index`` (which
the catalog builds) both use it without either importing the other.
"""

from __future__ import annotations

import re
import unicodedata

_NIQQUD = re.compile(r"[\u0591-\u05c7]")  # Hebrew cantillation and vowel points (combining marks)


def normalize(text: str) -> str:
    """Search form of text: NFKC, case-folded, without niqqud, direction marks or other format characters."""
    text = unicodedata.normalize("NFKC", text)
    text = _NIQQUD.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\n\t")
    return text.casefold()


def category_key(label: str) -> str:
    """A category label in search form, as the ``category`` filter and the index both compare it."""
    return normalize(label).strip()
