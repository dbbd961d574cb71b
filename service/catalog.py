"""Stores and their products: loading dirty scraped files, stable ids, and search.

A store folder is ``<stores_dir>/<store-id>/data/products.json`` (``{"scrapedAt", "products":
[{"name","price","category","url","image"}]}``) with an optional ``store.json`` giving
``name``, ``currency`` and ``base_url``. Loading never fails on one bad record: it counts what
it skipped or merged and logs why.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from service.catalog_json import UNREADABLE, read_document
from service.catalog_text import clean_text, web_link
from service.checkout import CheckoutTemplate, CheckoutTemplateError
from service.prices import is_missing, parse_price
from service.search_form import category_key, normalize
from service.search_index import MAX_SEARCH_DEPTH, MAX_SEARCH_WORDS, SearchIndex

logger = logging.getLogger(__name__)

DEFAULT_CURRENCY = "ILS"
_ITEM_NUMBER = re.compile(r"-i(\d+)/?$")
_CATEGORY_LINK = re.compile(r"-c\d+/?$")
_POSITIONAL_ID = re.compile(r"^(?P<store>[^:]+):(?P<index>\d+)$")
_STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SearchRefused(ValueError):
    """A query the catalog will not run (too many different words); the message is one sentence for the client."""


class CatalogError(ValueError):
    """A store folder cannot be used at all (as opposed to one bad record, which is skipped)."""


# What one bad record may raise while it is read; it is then skipped and counted, never fatal.
RECORD_ERRORS = (ValueError, TypeError, ArithmeticError, AttributeError, KeyError)


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

    @property
    def search_name(self) -> str:
        """The name in search form (computed when asked: only the index reads it, once, when it is built)."""
        return normalize(self.name)

    @property
    def search_text(self) -> str:
        """Name, categories and description in search form: a query word must be a substring of this."""
        return "\n".join([self.search_name, *(normalize(c) for c in self.categories), normalize(self.description)])

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
    by_position: dict[int, str] = field(repr=False)  # file index -> product id (positional ids, DESIGN.md)
    checkout: CheckoutTemplate | None = None  # store.json "checkout": links to the store's own cart


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
        """The product an id names; positional ids (``<store-id>:<index>``, DESIGN.md) are still understood."""
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
        A word given twice counts once; more than ``MAX_SEARCH_WORDS`` different words are refused, and
        so is a page starting past the first ``MAX_SEARCH_DEPTH`` matches (``total`` still counts all).
        """
        words = search_words(query)
        wanted_category = (category_key(category) if category else None) or None
        span = self._spans[store_id] if store_id else range(len(self._in_order))
        start = (page - 1) * page_size
        if start < MAX_SEARCH_DEPTH:
            positions, total = self._index.search(words, wanted_category, span, start, page_size)
        else:  # count only (no ranking): past the end is "past the last page", not "too deep"
            positions, total = self._index.search(words, wanted_category, span, 0, 0)
            if start < total:
                raise SearchRefused(
                    f"page {page} starts past the first {MAX_SEARCH_DEPTH} matches, which is as deep as a search "
                    "pages; narrow the search (more words, a category or a store) to see the rest."
                )
        return SearchPage([self._in_order[p] for p in positions], total, page, page_size)


def search_words(query: str) -> list[str]:
    """The query's different words in search form, in order; ``SearchRefused`` when there are too many."""
    words = list(dict.fromkeys(normalize(query).split()))
    if len(words) > MAX_SEARCH_WORDS:
        raise SearchRefused(
            f"search has {len(words)} different words; use at most {MAX_SEARCH_WORDS}, the ones that matter most."
        )
    return words


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
    """Every usable store folder; a folder that cannot be read is skipped with one ERROR line naming why."""
    if not stores_dir.is_dir():
        raise CatalogError(f"WEFT_STORES_DIR {str(stores_dir)!r} is not a folder")
    folders = [folder for folder in sorted(stores_dir.iterdir()) if (folder / "data" / "products.json").is_file()]
    if not folders:
        raise CatalogError(f"no store folders (<store-id>/data/products.json) under {str(stores_dir)!r}")
    stores = []
    for folder in folders:
        try:
            stores.append(load_store(folder))
        except CatalogError as exc:
            logger.error("Store folder %s skipped: %s", folder.name, exc)
    if not stores:
        raise CatalogError(
            f"no usable store under {str(stores_dir)!r}: all {len(folders)} store folder(s) were skipped"
        )
    return Catalog(stores)


def load_store(folder: Path) -> Store:
    """One store folder: ``store.json`` (optional) and ``data/products.json``."""
    meta = _store_meta(folder / "store.json")
    store = load_products_file(
        folder / "data" / "products.json",
        store_id=folder.name,
        name=meta.get("name") or folder.name,
        currency=meta.get("currency") or DEFAULT_CURRENCY,
        base_url=meta.get("base_url"),
    )
    checkout = _checkout_template(folder / "store.json")
    return store if checkout is None else dataclasses.replace(store, checkout=checkout)


def _checkout_template(path: Path) -> CheckoutTemplate | None:
    """``store.json``'s optional ``checkout`` template, checked now: a store whose links could not be read back
    is refused at load, with the reason, rather than handing shoppers broken links."""
    if not path.exists():
        return None
    meta = _read_json(path, numbers_as_text=False)
    if not isinstance(meta, dict) or meta.get("checkout") is None:
        return None
    try:
        return CheckoutTemplate.parse(meta["checkout"])
    except CheckoutTemplateError as exc:
        raise CatalogError(f"{str(path)!r}: {exc}") from None


def _store_meta(path: Path) -> dict[str, str]:
    """``store.json``: an object whose ``name``, ``currency`` and ``base_url`` are strings when given."""
    if not path.exists():
        return {}
    meta = _read_json(path, numbers_as_text=False)
    if not isinstance(meta, dict):
        raise CatalogError(f"{str(path)!r} holds a JSON {type(meta).__name__}, not an object")
    for key in ("name", "currency", "base_url"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise CatalogError(f"{str(path)!r}: {key!r} must be a string, not {type(meta[key]).__name__}")
    return {key: clean_text(meta[key]).strip() for key in ("name", "currency", "base_url") if meta.get(key)}


def _read_json(path: Path, *, numbers_as_text: bool = True) -> Any:
    """The file's JSON (a leading UTF-8 BOM is allowed); numbers as ``JSONNumber`` unless not ``numbers_as_text``."""
    try:
        if numbers_as_text:
            return read_document(path)
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CatalogError(f"cannot read {str(path)!r}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def load_products_file(
    path: Path, *, store_id: str, name: str | None = None, currency: str = DEFAULT_CURRENCY, base_url: str | None = None
) -> Store:
    """Parse one scraped products file into a store (ids, merging, skipped records)."""
    if not _STORE_ID.match(store_id):
        raise CatalogError(f"store id {store_id!r} must be letters, digits, '.', '_' or '-' (no ':')")
    document = _read_json(path)
    records = document.get("products") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise CatalogError(f"{str(path)!r} has no 'products' list")
    return build_store(records, store_id=store_id, name=name or store_id, currency=currency, base_url=base_url)


@dataclass
class _Draft:
    """Records that share one product id, merged as they arrive."""

    name: str = ""
    price: Decimal | None = None
    unreadable_price: bool = False
    categories: list[str] = field(default_factory=list)
    description: str = ""
    image: str | None = None
    url: str | None = None


@dataclass
class _Tally:
    """What the start-up line reports about one store's records."""

    skipped: Counter[str] = field(default_factory=Counter)
    merged: int = 0
    dropped_links: int = 0


def build_store(
    records: Iterable[Any], *, store_id: str, name: str, currency: str = DEFAULT_CURRENCY, base_url: str | None = None
) -> Store:
    tally = _Tally()
    drafts: dict[str, _Draft] = {}
    positions: dict[int, str] = {}
    count = 0
    for index, record in enumerate(records):
        count += 1
        try:
            product_id = _add_record(record, store_id, drafts, tally)
        except RECORD_ERRORS:
            product_id = None
            tally.skipped["unreadable records"] += 1
        if product_id is not None:
            positions[index] = product_id
    products = tuple(_finish(pid, store_id, draft, base_url, tally) for pid, draft in drafts.items())
    unpriced = sum(1 for p in products if p.price is None)
    unreadable = sum(1 for d in drafts.values() if d.price is None and d.unreadable_price)
    logger.info(
        "Store %s: %d records -> %d products (%d merged duplicates, %d without a price of which %d unreadable "
        "prices, %d links dropped (not http/https); skipped: %s)",
        store_id,
        count,
        len(products),
        tally.merged,
        unpriced,
        unreadable,
        tally.dropped_links,
        ", ".join(f"{n} {why}" for why, n in tally.skipped.items()) or "none",
    )
    return Store(
        id=store_id,
        name=name,
        currency=currency,
        products=products,
        by_id={p.id: p for p in products},
        by_position=positions,
    )


def _add_record(record: Any, store_id: str, drafts: dict[str, _Draft], tally: _Tally) -> str | None:
    """Merge one record into its product's draft; its product id, or None when it is skipped (and counted)."""
    reason = _skip_reason(record)
    if reason:
        tally.skipped[reason] += 1
        return None
    short_name, _, description = str(record["name"]).strip().partition("\n")
    short_name, description = clean_text(short_name).strip(), clean_text(description, multiline=True).strip()
    if not short_name:
        tally.skipped["without a name"] += 1
        return None
    url = record.get("url") if isinstance(record.get("url"), str) and record["url"].strip() else None
    item = _ITEM_NUMBER.search(url) if url else None
    product_id = f"{store_id}:i{item[1]}" if item else f"{store_id}:h{_name_hash(short_name)}"
    raw_price = record.get("price")
    price = parse_price(raw_price)
    draft = drafts.get(product_id)
    if draft is None:
        draft = drafts[product_id] = _Draft()
    else:
        tally.merged += 1
    draft.unreadable_price = draft.unreadable_price or (price is None and not is_missing(raw_price))
    # The priced (listing) record gives name and price; the page record gives the description.
    if price is not None and draft.price is None:
        draft.price, draft.name, draft.url = price, short_name, url or draft.url
    if not draft.name:
        draft.name = short_name
    draft.description = draft.description or description
    draft.url = draft.url or url
    draft.image = draft.image or _text_or_none(record.get("image"))
    category = _text_or_none(record.get("category"))
    category = clean_text(category).strip() if category else None
    if category and category not in draft.categories:
        draft.categories.append(sys.intern(category))
    return product_id


def _skip_reason(record: Any) -> str | None:
    if record is UNREADABLE:
        return "unreadable records"
    if not isinstance(record, dict):
        return "not an object"
    if not isinstance(record.get("name"), str) or not record["name"].strip():
        return "without a name"
    url = record.get("url")
    if isinstance(url, str) and _CATEGORY_LINK.search(url):
        return "category links"
    return None


def _finish(product_id: str, store_id: str, draft: _Draft, base_url: str | None, tally: _Tally) -> Product:
    image, url = web_link(draft.image, base_url), web_link(draft.url, base_url)
    tally.dropped_links += (draft.image is not None and image is None) + (draft.url is not None and url is None)
    return Product(
        id=product_id,
        store_id=store_id,
        name=draft.name,
        price=draft.price,
        categories=tuple(draft.categories),
        description=draft.description,
        image=image,
        url=url,
    )


def _text_or_none(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _name_hash(name: str) -> str:
    return hashlib.sha256(normalize(name).encode("utf-8")).hexdigest()[:8]
