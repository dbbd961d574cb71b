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
# C0 and C1 controls (keeping newline and tab for multi-line text), DEL, the bidi embedding,
# override and isolate controls that can reorder what a reader sees, and invisible format characters
# that only hide text: BOM/zero-width no-break space, zero-width space, word joiner and invisible
# operators, deprecated format controls, interlinear annotations, the Mongolian vowel separator and
# the tag characters (which can smuggle text a reader never sees; flag emoji of subdivisions lose
# their tags). Ordinary marks (LRM, RLM, ALM) and joiners (ZWNJ, ZWJ in emoji) stay: Hebrew,
# Arabic, Persian and emoji need them.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
    "\ufeff\u200b\u2060-\u2064\u206a-\u206f\ufff9-\ufffb\u180e\U000e0000-\U000e007f]"
)
_SEPARATORS = re.compile("[\u2028\u2029]")  # line and paragraph separators: line breaks
_LINE_BREAKS = re.compile(r"[\n\t]+")
WEB_SCHEMES = ("http", "https")


def clean_text(text: str, *, multiline: bool = False) -> str:
    """``text`` without escape sequences or control characters; one line unless ``multiline``."""
    text = _SEPARATORS.sub("\n", _CONTROLS.sub("", _ESCAPE_SEQUENCE.sub("", text)))
    return text if multiline else _LINE_BREAKS.sub(" ", text)


def web_link(link: str | None, base_url: str | None) -> str | None:
    """``link`` as an absolute http(s) URL, or ``None`` for anything else.

    Surrounding whitespace is trimmed. A protocol-relative link (``//host/x``) takes ``base_url``'s
    scheme, as a browser on that page would (https without a base); other relative links are joined
    below ``base_url``'s path (``/img/a.png`` with ``https://s.test/shop/`` is ``.../shop/img/a.png``).
    """
    link = (link or "").strip()
    if not link or _CONTROLS.search(link) or any(ch.isspace() for ch in link):
        return None
    if link.startswith("//"):
        absolute = f"{urlsplit(base_url).scheme if base_url else 'https'}:{link}"
    elif base_url and "://" not in link:
        absolute = urljoin(base_url, link.lstrip("/"))
    else:
        absolute = link
    try:
        parts = urlsplit(absolute)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
        return None
    return absolute
