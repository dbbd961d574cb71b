"""Checkout handoff: links that open a store's own cart with a cart's lines (DESIGN "Checkout handoff").

A store's ``store.json`` may give ``"checkout": {"url": "https://shop.example/cart/{items}", "item":
"{item}:{quantity}", "separator": ","}``: ``{item}`` is the store's item number (``-i<digits>``), ``{id}`` the
product id, ``{quantity}`` the line's quantity. A value outside ``[A-Za-z0-9._-]`` is written ``~`` + its
base64url (UTF-8, unpadded), as UCP permalinks do. A link is at most ``MAX_LINK_BYTES``; a bigger cart gets
several. Links carry only ids and quantities: never a cart_id, code or token, so a link leaked from a chat
reaches nothing but a public store page, and opening one places no order.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LINK_BYTES = 2048
ITEMS = "{items}"
SAFE_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")
_ITEM_NUMBER = re.compile(r":i(\d+)$")
_PLACEHOLDER = re.compile(r"\{(item|id|quantity)\}")
_UNSAFE_NEXT = re.compile(r"[A-Za-z0-9._~-]")
NOTE = (
    "Opening a link places no order: it opens the store's own cart with these lines, where the shopper "
    "reviews them and pays; prices and stock are the store's at that moment."
)
NO_TEMPLATE_NOTE = " Stores without a checkout link list each product's page instead."


class CheckoutTemplateError(ValueError):
    """A ``store.json`` checkout template that could not build a link that parses back; the message says why."""


@dataclass(frozen=True, slots=True)
class CheckoutTemplate:
    url: str
    item: str
    separator: str

    @classmethod
    def parse(cls, raw: Any) -> CheckoutTemplate:
        """Checked when the store loads, so every link it builds can be read back: ``url`` is http(s) with one
        ``{items}``; ``item`` has one ``{quantity}`` and one ``{item}`` or ``{id}``, each followed by the end
        or a character no value holds; ``separator`` is such characters too."""
        if not isinstance(raw, Mapping):
            raise CheckoutTemplateError("'checkout' must be an object with 'url', 'item' and 'separator'")
        url, item, separator = raw.get("url"), raw.get("item", "{item}:{quantity}"), raw.get("separator", ",")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) or url.count(ITEMS) != 1:
            raise CheckoutTemplateError("'checkout.url' must be an http(s) URL holding {items} once")
        if not isinstance(item, str) or not isinstance(separator, str) or not separator:
            raise CheckoutTemplateError("'checkout.item' and 'checkout.separator' must be non-empty strings")
        names = _PLACEHOLDER.findall(item)
        if sorted(names) not in (["id", "quantity"], ["item", "quantity"]):
            raise CheckoutTemplateError("'checkout.item' must hold {quantity} once and one of {item} or {id}")
        for found in _PLACEHOLDER.finditer(item):
            after = item[found.end() : found.end() + 1]
            if after and _UNSAFE_NEXT.match(after):
                raise CheckoutTemplateError(
                    "in 'checkout.item', a placeholder must be followed by its end or a character like ':' or '&'"
                )
        if _UNSAFE_NEXT.match(separator[0]) or "{" in separator:
            raise CheckoutTemplateError("'checkout.separator' must start with a character like ',' or '&'")
        return cls(url=url, item=item, separator=separator)

    @property
    def wants_item_number(self) -> bool:
        return "{item}" in self.item

    def entry(self, product_id: str, quantity: int) -> str | None:
        """One line as the template writes it, or None when the product has no item number to write."""
        if self.wants_item_number:
            number = _ITEM_NUMBER.search(product_id)
            if number is None:
                return None
            value = number.group(1)
        else:
            value = product_id
        return (
            self.item.replace("{item}", encode(value))
            .replace("{id}", encode(value))
            .replace("{quantity}", str(quantity))
        )

    def link(self, entries: Sequence[str]) -> str:
        return self.url.replace(ITEMS, self.separator.join(entries))

    def read(self, link: str) -> list[tuple[str, int]]:
        """The lines a link of this template carries, as (item number or product id, quantity): the inverse of
        ``link``, for tests and for anyone checking what a link will put in the store's cart."""
        head, tail = self.url.split(ITEMS)
        if not link.startswith(head) or not link.endswith(tail) or len(link) < len(head) + len(tail):
            raise ValueError("not a link of this template")
        body = link[len(head) : len(link) - len(tail)]
        pattern = re.compile(
            "".join(
                "(?P<q>[0-9]+)"
                if part == "{quantity}"
                else "(?P<v>~[A-Za-z0-9_-]*|[A-Za-z0-9._-]+)"
                if part in ("{item}", "{id}")
                else re.escape(part)
                for part in re.split(r"(\{item\}|\{id\}|\{quantity\})", self.item)
                if part
            )
        )
        lines: list[tuple[str, int]] = []
        position = 0
        while position < len(body):  # entry (separator entry)*: a value never holds the character after it
            matched = pattern.match(body, position)
            if matched is None:
                raise ValueError("a link entry does not match the template")
            lines.append((decode(matched.group("v")), int(matched.group("q"))))
            position = matched.end()
            if position < len(body):
                if not body.startswith(self.separator, position):
                    raise ValueError("link entries are not separated as the template says")
                position += len(self.separator)
        return lines


def encode(value: str) -> str:
    """``value`` itself when it is all ``[A-Za-z0-9._-]``, else ``~`` + base64url of its UTF-8 (no padding)."""
    if SAFE_VALUE.match(value):
        return value
    return "~" + base64.urlsafe_b64encode(value.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode(value: str) -> str:
    if not value.startswith("~"):
        return value
    body = value[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")


def pack(template: CheckoutTemplate, lines: Sequence[tuple[str, int]]) -> tuple[list[list[int]], list[int]]:
    """Which lines go in which link (indexes into ``lines``), in cart order, each link within
    ``MAX_LINK_BYTES``; and the lines no link can carry (no item number, or too long alone)."""
    links: list[list[int]] = []
    unlinked: list[int] = []
    current: list[int] = []
    base = len(template.link([]).encode("utf-8"))
    size = base
    separator = len(template.separator.encode("utf-8"))
    for index, (product_id, quantity) in enumerate(lines):
        entry = template.entry(product_id, quantity)
        if entry is None or base + len(entry.encode("utf-8")) > MAX_LINK_BYTES:
            unlinked.append(index)
            continue
        grown = size + len(entry.encode("utf-8")) + (separator if current else 0)
        if current and grown > MAX_LINK_BYTES:
            links.append(current)
            current, grown = [], base + len(entry.encode("utf-8"))
        current.append(index)
        size = grown
    if current:
        links.append(current)
    return links, unlinked


def checkout_links(
    lines: Sequence[tuple[str, int]], stores: Mapping[str, Any], product_url: Callable[[str], str | None]
) -> list[dict[str, Any]]:
    """DESIGN's ``links``: per store in the cart (in cart order), links of its template, each ``{"store", "url",
    "items": [{"id", "quantity"}]}``; lines no template link can carry (a store without a template, a product
    without an item number) come as ``"url": null`` with each item's own product page ``url`` (or null).
    ``stores`` maps a store id to something with ``checkout`` (a template or None); ``product_url(id)`` is
    the product's page or None."""
    by_store: dict[str, list[tuple[str, int]]] = {}
    for product_id, quantity in lines:
        by_store.setdefault(product_id.split(":", 1)[0], []).append((product_id, quantity))
    answer: list[dict[str, Any]] = []
    for store_id, store_lines in by_store.items():
        store = stores.get(store_id)
        template = getattr(store, "checkout", None)
        groups, unlinked = pack(template, store_lines) if template is not None else ([], list(range(len(store_lines))))
        for group in groups:
            assert template is not None
            carried = [store_lines[i] for i in group]
            url = template.link([template.entry(pid, qty) or "" for pid, qty in carried])
            answer.append({"store": store_id, "url": url, "items": [{"id": p, "quantity": q} for p, q in carried]})
        if unlinked:
            items = [
                {"id": store_lines[i][0], "quantity": store_lines[i][1], "url": product_url(store_lines[i][0])}
                for i in unlinked
            ]
            answer.append({"store": store_id, "url": None, "items": items})
    return answer
