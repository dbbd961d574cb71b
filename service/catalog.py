"""Stores and their products: loading dirty scraped files, stable ids, and search.

A store folder is ``<stores_dir>/<store-id>/data/products.json`` (``{"scrapedAt", "products":
[{"name","price","category","url","image"}]}``) with an optional ``store.json`` giving
``name``, ``currency`` and ``base_url``. Loading never fails on one bad record: it counts what
it skipped or merged and logs why.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from service.search_index import SearchIndex

logger = logging.getLogger(__name__)

DEFAULT_CURRENCY = "ILS"
_ITEM_NUMBER = re.compile(r"-i(\d+)/?$")
_CATEGORY_LINK = re.compile(r"-c\d+/?$")
_POSITIONAL_ID = re.compile(r"^(?P<store>[^:]+):(?P<index>\d+)$")
_STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PRICE_JUNK = re.compile(r"[^\d.,\-]")
_NIQQUD = re.compile(r"[\u0591-\u05c7]")  # Hebrew cantillation and vowel points (combining marks)


class CatalogError(ValueError):
    """A store folder cannot be used at all (as opposed to one bad record, which is skipped)."""


def normalize(text: str) -> str:
    """Search form of text: NFKC, case-folded, without niqqud, direction marks or other format characters."""
    text = unicodedata.normalize("NFKC", text)
    text = _NIQQUD.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\n\t")
    return text.casefold()


def parse_price(raw: Any) -> Decimal | None:
    """``"24.4"``, ``24.4``, ``"₪ 1,299.90"`` -> ``Decimal`` with two places; junk, zero or negative -> None."""
    if raw is None or isinstance(raw, bool):
        return None
    text = _PRICE_JUNK.sub("", str(raw))
    if "," in text and "." not in text:
        text = text.replace(",", ".") if re.search(r",\d{1,2}$", text) else text.replace(",", "")
    text = text.replace(",", "")
    try:
        price = Decimal(text)
    except InvalidOperation:
        return None
    if not price.is_finite() or price <= 0:
        return None
    return price.quantize(Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    store_id: str
    name: str
    price: Decimal | None
    categories: tuple[str, ...]
    description: str
    image: str | None
    url: str | None
    search_name: str = field(repr=False)
    search_text: str = field(repr=False)

    @property
    def is_purchasable(self) -> bool:
        return self.price is not None

    @property
    def category(self) -> str:
        return self.categories[0] if self.categories else ""


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    currency: str
    products: tuple[Product, ...]
    by_id: dict[str, Product] = field(repr=False)
    by_position: dict[int, str] = field(repr=False)  # file index -> product id (the original's ids)


@dataclass(frozen=True, slots=True)
class SearchPage:
    products: list[Product]
    total: int
    page: int
    page_size: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.page_size)


class Catalog:
    """All stores, looked up by product id (``<store>:i123``, ``<store>:h1a2b3c4d`` or ``<store>:7``)."""

    def __init__(self, stores: Sequence[Store]) -> None:
        self.stores = {store.id: store for store in stores}
        self._products = {p.id: p for store in stores for p in store.products}
        # search: one inverted index over all stores in order; each store is a span of positions
        self._spans: dict[str, range] = {}
        for store in stores:
            start = sum(len(span) for span in self._spans.values())
            self._spans[store.id] = range(start, start + len(store.products))
        self._in_order = [p for store in stores for p in store.products]
        self._index = SearchIndex(self._in_order)

    def product(self, product_id: str) -> Product | None:
        """The product an id names; positional ids of the original server are still understood."""
        product = self._products.get(product_id)
        if product is not None:
            return product
        match = _POSITIONAL_ID.match(product_id)
        store = self.stores.get(match["store"]) if match else None
        if match is None or store is None:
            return None
        canonical = store.by_position.get(int(match["index"]))
        return self._products.get(canonical) if canonical else None

    def currency_of(self, product_id: str) -> str | None:
        store = self.stores.get(product_id.split(":", 1)[0])
        return store.currency if store else None

    def categories(self, store_id: str | None = None) -> list[str]:
        stores = [self.stores[store_id]] if store_id else self.stores.values()
        counts = Counter(c for store in stores for p in store.products for c in p.categories)
        return [name for name, _ in counts.most_common()]

    def search(
        self,
        query: str,
        *,
        category: str | None = None,
        store_id: str | None = None,
        page: int = 1,
        page_size: int = 12,
    ) -> SearchPage:
        """Every query word must appear in name, category or description; best matches first.

        Ranking (``SearchIndex``): per word, 3 when it starts a name word, 2 inside the name, 1 in
        category or description; +1 when the name starts with the first word; ties in catalog order.
        """
        words = normalize(query).split()
        wanted_category = (normalize(category).strip() if category else None) or None
        span = self._spans[store_id] if store_id else range(len(self._in_order))
        start = (page - 1) * page_size
        positions, total = self._index.search(words, wanted_category, span, start, page_size)
        return SearchPage([self._in_order[p] for p in positions], total, page, page_size)


@functools.lru_cache(maxsize=8)
def load_catalog(stores_dir: Path | None) -> Catalog:
    """Every store folder under ``stores_dir``; the bundled demo store(s) when it is ``None``.

    Loaded once per process and folder: ``weft-mcp serve`` checks the catalog before starting
    uvicorn, and with one worker the app factory then runs in that same process.
    """
    if stores_dir is None:
        root = resources.files("service") / "data" / "stores"
        with resources.as_file(root) as path:
            return _load_dir(Path(path))
    return _load_dir(Path(stores_dir))


def _load_dir(stores_dir: Path) -> Catalog:
    if not stores_dir.is_dir():
        raise CatalogError(f"WEFT_STORES_DIR {str(stores_dir)!r} is not a folder")
    stores = [
        load_store(folder) for folder in sorted(stores_dir.iterdir()) if (folder / "data" / "products.json").is_file()
    ]
    if not stores:
        raise CatalogError(f"no store folders (<store-id>/data/products.json) under {str(stores_dir)!r}")
    return Catalog(stores)


def load_store(folder: Path) -> Store:
    """One store folder: ``store.json`` (optional) and ``data/products.json``."""
    store_id = folder.name
    meta: dict[str, Any] = {}
    if (folder / "store.json").is_file():
        meta = json.loads((folder / "store.json").read_text(encoding="utf-8"))
    return load_products_file(
        folder / "data" / "products.json",
        store_id=store_id,
        name=str(meta.get("name") or store_id),
        currency=str(meta.get("currency") or DEFAULT_CURRENCY),
        base_url=meta.get("base_url"),
    )


def load_products_file(
    path: Path, *, store_id: str, name: str | None = None, currency: str = DEFAULT_CURRENCY, base_url: str | None = None
) -> Store:
    """Parse one scraped products file into a store (ids, merging, skipped records)."""
    if not _STORE_ID.match(store_id):
        raise CatalogError(f"store id {store_id!r} must be letters, digits, '.', '_' or '-' (no ':')")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {str(path)!r}: {exc}") from exc
    records = document.get("products") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise CatalogError(f"{str(path)!r} has no 'products' list")
    return build_store(records, store_id=store_id, name=name or store_id, currency=currency, base_url=base_url)


@dataclass
class _Draft:
    """Records that share one product id, merged as they arrive."""

    name: str = ""
    price: Decimal | None = None
    categories: list[str] = field(default_factory=list)
    description: str = ""
    image: str | None = None
    url: str | None = None


def build_store(
    records: Iterable[Any], *, store_id: str, name: str, currency: str = DEFAULT_CURRENCY, base_url: str | None = None
) -> Store:
    skipped: Counter[str] = Counter()
    drafts: dict[str, _Draft] = {}
    positions: dict[int, str] = {}
    merged = 0
    for index, record in enumerate(records):
        reason = _skip_reason(record)
        if reason:
            skipped[reason] += 1
            continue
        short_name, _, description = str(record["name"]).strip().partition("\n")
        short_name, description = short_name.strip(), description.strip()
        url = record.get("url") if isinstance(record.get("url"), str) and record["url"].strip() else None
        item = _ITEM_NUMBER.search(url) if url else None
        product_id = f"{store_id}:i{item[1]}" if item else f"{store_id}:h{_name_hash(short_name)}"
        price = parse_price(record.get("price"))
        draft = drafts.get(product_id)
        if draft is None:
            draft = drafts[product_id] = _Draft()
        else:
            merged += 1
        # The priced (listing) record gives name and price; the page record gives the description.
        if price is not None and draft.price is None:
            draft.price, draft.name, draft.url = price, short_name, url or draft.url
        if not draft.name:
            draft.name = short_name
        draft.description = draft.description or description
        draft.url = draft.url or url
        draft.image = draft.image or _text_or_none(record.get("image"))
        category = _text_or_none(record.get("category"))
        if category and category not in draft.categories:
            draft.categories.append(category)
        positions[index] = product_id
    products = tuple(_finish(pid, store_id, draft, base_url) for pid, draft in drafts.items())
    unpriced = sum(1 for p in products if p.price is None)
    logger.info(
        "Store %s: %d records -> %d products (%d merged duplicates, %d without a price; skipped: %s)",
        store_id, index + 1 if drafts or skipped else 0, len(products), merged, unpriced,
        ", ".join(f"{n} {why}" for why, n in skipped.items()) or "none",
    )  # fmt: skip
    return Store(
        id=store_id, name=name, currency=currency, products=products,
        by_id={p.id: p for p in products}, by_position=positions,
    )  # fmt: skip


def _skip_reason(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not an object"
    if not isinstance(record.get("name"), str) or not record["name"].strip():
        return "without a name"
    url = record.get("url")
    if isinstance(url, str) and _CATEGORY_LINK.search(url):
        return "category links"
    return None


def _finish(product_id: str, store_id: str, draft: _Draft, base_url: str | None) -> Product:
    categories = tuple(draft.categories)
    search_name = normalize(draft.name)
    search_text = "\n".join([search_name, *(normalize(c) for c in categories), normalize(draft.description)])
    return Product(
        id=product_id,
        store_id=store_id,
        name=draft.name,
        price=draft.price,
        categories=categories,
        description=draft.description,
        image=_absolute(draft.image, base_url),
        url=_absolute(draft.url, base_url),
        search_name=search_name,
        search_text=search_text,
    )


def _absolute(link: str | None, base_url: str | None) -> str | None:
    if not link or not base_url:
        return link
    return urljoin(base_url, link.lstrip("/")) if "://" not in link else link


def _text_or_none(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _name_hash(name: str) -> str:
    return hashlib.sha256(normalize(name).encode("utf-8")).hexdigest()[:8]
