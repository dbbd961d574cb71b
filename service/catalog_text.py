"""Scraped text made safe to hand to clients: no control characters in names, only web links.

Markup is left alone on purpose: the service answers JSON and plain text, never HTML, so
``<b>`` in a name is just text; escaping or stripping it would change what the shop wrote.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

# Terminal escape sequences, removed whole (not only their ESC): CSI "ESC [ ... final" (and the
# 8-bit CSI U+009B), OSC "ESC ] ... BEL|ST" (and U+009D), and two-character "ESC x" sequences.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 and C1 controls (keeping newline and tab for multi-line text), DEL, and the bidi embedding,
# override and isolate controls that can reorder what a reader sees. Ordinary marks (LRM, RLM)
# and joiners (ZWJ in emoji) stay: Hebrew text and emoji need them.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\n\t]+")
WEB_SCHEMES = ("http", "https")


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` without escape sequences or control characters; one line unless ``multiline``."""
    text = _CONTROLS.sub("", _ESCAPE_SEQUENCE.sub("", text))
    return text if multiline else _LINE_BREAKS.sub(" ", text)


def web_link(link: str | None, base_url: str | None) -> str | None:
    """``link`` as an absolute http(s) URL (relative ones joined to ``base_url``), or ``None`` for anything else."""
    if not link:
        return None
    if _CONTROLS.search(link) or any(ch.isspace() for ch in link):
        return None
    absolute = urljoin(base_url, link.lstrip("/")) if base_url and "://" not in link else link
    try:
        parts = urlsplit(absolute)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
        return None
    return absolute
