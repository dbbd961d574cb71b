"""Catalog loading (ids, merging, dirty records) and search."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.catalog import (
    Catalog,
    CatalogError,
    build_store,
    load_catalog,
    load_products_file,
    normalize,
    parse_price,
)


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_catalog(None)


@pytest.fixture(scope="module")
def real(shared_catalog_file: Path) -> Catalog:
    return Catalog([load_products_file(shared_catalog_file, store_id="nitzat")])


def test_real_catalog_has_697_products(real: Catalog) -> None:
    """1,325 scraped records become 697 products: duplicates merged, category links dropped."""
    store = real.stores["nitzat"]
    assert len(store.products) == 697
    assert len({p.id for p in store.products}) == 697
    assert not any(p.name == "למוצרי הקטגוריה" for p in store.products)


def test_real_item_8085_is_one_priced_product_with_description(real: Catalog) -> None:
    product = real.product("nitzat:i8085")
    assert product is not None
    assert product.price == Decimal("24.40")
    assert product.name == "אגוזי לוז אורגני 200 גרם - ניצת הדובדבן"
    assert "\n" not in product.name
    assert product.description.startswith("אגוזי לוז מכילים")
    assert [p.id for p in real.stores["nitzat"].products].count("nitzat:i8085") == 1


def test_real_records_without_url_get_name_hash_ids(real: Catalog) -> None:
    hashed = [p for p in real.stores["nitzat"].products if p.id.startswith("nitzat:h")]
    assert len(hashed) == 8
    assert all(len(p.id.split(":h")[1]) == 8 for p in hashed)


def test_real_positional_ids_mean_file_positions(real: Catalog, shared_catalog_file: Path) -> None:
    """Positional ids ``<store>:<index>`` still name the index-th record's product."""
    records = json.loads(shared_catalog_file.read_text(encoding="utf-8"))["products"]
    assert records[0]["url"].endswith("-i8085")
    assert real.product("nitzat:0") is real.product("nitzat:i8085")
    category_link = next(i for i, r in enumerate(records) if (r["url"] or "").endswith("-c43"))
    assert real.product(f"nitzat:{category_link}") is None
    assert real.product(f"nitzat:{len(records)}") is None


def test_real_search_hebrew(real: Catalog) -> None:
    page = real.search("אגוזי לוז", page_size=5)
    assert page.total >= 2
    assert page.products[0].name.startswith("אגוזי לוז")


def test_demo_store_shape(demo: Catalog) -> None:
    store = demo.stores["demo-market"]
    assert store.name == "Weft Demo Market" and store.currency == "ILS"
    assert 50 <= len(store.products) <= 150
    assert len(demo.categories()) >= 5
    unpriced = [p for p in store.products if not p.is_purchasable]
    assert 1 <= len(unpriced) <= 10
    assert any(p.name.isascii() for p in store.products)
    assert any(any("\u05d0" <= ch <= "\u05ea" for ch in p.name) for p in store.products)
    # relative links are made absolute with the store's base_url
    assert all(p.image is None or p.image.startswith("https://") for p in store.products)


def test_demo_duplicate_records_are_merged(demo: Catalog) -> None:
    product = demo.product("demo-market:i1702")
    assert product is not None
    assert product.price == Decimal("18.90")
    assert product.name == "Organic Rolled Oats 1kg"
    assert product.description


def test_build_store_merges_skips_and_keeps_categories(caplog: pytest.LogCaptureFixture) -> None:
    records = [
        {"name": "Tea", "price": "12.5", "category": "Drinks", "url": "tea-i7", "image": "t.jpg"},
        {"name": "Tea\nGreen tea leaves.", "price": None, "category": "Gifts", "url": "green-tea-i7", "image": None},
        {"name": "All drinks", "price": None, "category": "Drinks", "url": "drinks-c3", "image": None},
        "not a record",
        {"name": "", "price": "1"},
        {"name": "Loose Spoon", "price": "₪ 1,299.90", "category": "Home", "url": None, "image": None},
        {"name": "Free Sample", "price": "0", "category": "Home", "url": "sample-i9", "image": None},
    ]
    with caplog.at_level("INFO", logger="service.catalog"):
        store = build_store(records, store_id="t", name="Test", base_url="https://shop.test/")
    ids = [p.id for p in store.products]
    assert ids[0] == "t:i7" and ids[2] == "t:i9" and ids[1].startswith("t:h")
    tea = store.by_id["t:i7"]
    assert (tea.name, tea.price, tea.description) == ("Tea", Decimal("12.50"), "Green tea leaves.")
    assert tea.categories == ("Drinks", "Gifts")
    assert tea.url == "https://shop.test/tea-i7"
    assert store.by_id[ids[1]].price == Decimal("1299.90")
    assert store.by_id["t:i9"].price is None and not store.by_id["t:i9"].is_purchasable
    assert store.by_position == {0: "t:i7", 1: "t:i7", 5: ids[1], 6: "t:i9"}
    log = caplog.text
    assert "1 merged" in log and "1 category links" in log and "1 not an object" in log and "1 without a name" in log


def test_order_of_duplicate_records_does_not_matter() -> None:
    page = {"name": "Tea\nLong text.", "price": None, "category": "A", "url": "x-i1", "image": None}
    listing = {"name": "Tea", "price": "3", "category": "A", "url": "y-i1", "image": None}
    store = build_store([page, listing], store_id="s", name="S", base_url="https://s.test/")
    (tea,) = store.products
    assert (tea.name, tea.price, tea.description) == ("Tea", Decimal("3.00"), "Long text.")
    assert tea.url == "https://s.test/y-i1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("24.4", "24.40"), (24.4, "24.40"), (7, "7.00"), ("12,90", "12.90"), ("1,299", "1299.00"), ("₪19.9 ", "19.90"),
     (None, None), ("", None), ("n/a", None), ("0", None), ("-3", None), (True, None)],
)  # fmt: skip
def test_parse_price(raw: object, expected: str | None) -> None:
    price = parse_price(raw)
    assert (None if price is None else str(price)) == expected


def test_unusable_store_dir_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(CatalogError, match="not a folder"):
        load_catalog(tmp_path / "missing")
    with pytest.raises(CatalogError, match="no store folders"):
        load_catalog(tmp_path)
    bad = tmp_path / "bad" / "data"
    bad.mkdir(parents=True)
    (bad / "products.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="no usable store"):
        load_catalog(tmp_path)
    assert "Store folder bad skipped: cannot read" in caplog.text


def test_store_folder_layout(tmp_path: Path) -> None:
    folder = tmp_path / "corner-shop"
    (folder / "data").mkdir(parents=True)
    (folder / "store.json").write_text(json.dumps({"name": "Corner", "currency": "EUR"}), encoding="utf-8")
    (folder / "data" / "products.json").write_text(
        json.dumps({"scrapedAt": "x", "products": [{"name": "Bread", "price": "2", "category": "B", "url": "b-i1"}]}),
        encoding="utf-8",
    )
    catalog = load_catalog(tmp_path)
    store = catalog.stores["corner-shop"]
    assert (store.name, store.currency, [p.id for p in store.products]) == ("Corner", "EUR", ["corner-shop:i1"])


def test_normalize_ignores_case_niqqud_and_direction_marks() -> None:
    assert normalize("חַלָּה") == normalize("חלה") == "חלה"
    assert normalize("\u200fOATS\u200e") == "oats"
    assert normalize("ｏａｔ") == "oat"  # NFKC folds full-width letters


def test_search_every_word_must_match(demo: Catalog) -> None:
    both = demo.search("almond milk", page_size=50)
    assert both.total >= 1
    for product in both.products:
        text = product.search_text
        assert "almond" in text and "milk" in text
    assert demo.search("almond zzzz").total == 0


def test_search_ranks_name_hits_first(demo: Catalog) -> None:
    page = demo.search("tahini", page_size=50)
    assert page.total >= 2
    name_hits = ["tahini" in p.search_name for p in page.products]
    assert name_hits == sorted(name_hits, reverse=True)


def test_search_niqqud_and_case_insensitive(demo: Catalog) -> None:
    assert [p.name for p in demo.search("חלה").products] == [p.name for p in demo.search("חַלָּה").products]
    assert demo.search("חלה").total >= 1
    assert demo.search("OATS").total == demo.search("oats").total >= 1


def test_search_category_filter_and_paging(demo: Catalog) -> None:
    everything = demo.search("", page_size=50)
    assert everything.total == len(demo.stores["demo-market"].products)
    category = demo.categories()[0]
    filtered = demo.search("", category=category.upper(), page_size=50)
    assert filtered.total >= 1 and all(category in p.categories for p in filtered.products)
    page2 = demo.search("", page=2, page_size=10)
    assert page2.products == everything.products[10:20]
    assert page2.total_pages == -(-everything.total // 10)


# ---------------------------------------------------------------- prices read exactly as the shop wrote them

NBSP, NARROW_NBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.299,90", "1299.90"), ("1,299.90", "1299.90"), (f"1{NBSP}299,90", "1299.90"), (f"1{NARROW_NBSP}299,90",
     "1299.90"), ("1 299,90", "1299.90"), ("1'299.90", "1299.90"), ("1.299", "1299.00"), ("12.345.678,5",
     "12345678.50"), ("1,234,567", "1234567.00"), ("24,40", "24.40"), ("0.01", "0.01"), ("0,5", "0.50"),
     ("1299", "1299.00"), ("24.444", "24444.00"), ("₪ 1.299,90", "1299.90"), ("1,299.90 ₪", "1299.90"),
     ("ILS 24.40", "24.40"), ("24.40 NIS", "24.40"), ("Rs. 24.40", "24.40"), (24, "24.00"), (24.4, "24.40"),
     (0.1, "0.10"), ("  7 ", "7.00")],
)  # fmt: skip
def test_parse_price_reads_real_shop_formats_exactly(raw: object, expected: str) -> None:
    assert str(parse_price(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    ["0.005", "1e309", "1e5", "1E+20", "2e-2", 1e20, 1e309, float("nan"), float("inf"), 0.005, 24.444,
     "1.299,905", "٢٤", "٢٤.٥٠", "2٤", "२४", "２４", "12.3.4", "1,2,3", "1.29.90", "12,34,567", "01,299",
     "1,2990", "1.299.90", "1,299,90", "-5", "5-", "10-20", "10 - 20", "- 5", "0", "0.00", "0,00", "00", "-0.01",
     "1" * 13, "9" * 27, 10**27, "1" * 27 + ".50", "24.40.", ".5", "5.", "1,,299", "1.,299", "1 299.90 2",
     "24.40 ₪ 3",
     "Infinity", "NaN", "sNaN", "0x1A", "1_000", "½", "²", True, False, None, "", "  ", [24], {"price": 24}],
)  # fmt: skip
def test_parse_price_refuses_anything_it_cannot_read_exactly(raw: object) -> None:
    """Exponents, more than two decimals, other scripts' digits, signs, ranges, ambiguity or absurd size: no price."""
    assert parse_price(raw) is None


@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2),
    st.sampled_from([(",", "."), (".", ","), (" ", ","), (NBSP, ","), (NARROW_NBSP, ","), ("'", "."), ("", "."),
                     ("", ",")]),
    st.sampled_from(["", "₪", "₪ ", " ILS", "$", "NIS "]),
    st.booleans(),
)  # fmt: skip
def test_any_two_place_price_in_any_grouping_style_parses_back_to_itself(
    value: Decimal, style: tuple[str, str], currency: str, currency_first: bool
) -> None:
    thousands, decimal = style
    whole, cents = f"{value:.2f}".split(".")
    groups = [whole[max(0, end - 3) : end] for end in range(len(whole), 0, -3)][::-1]
    text = thousands.join(groups) + decimal + cents
    text = currency + text if currency_first else text + currency
    assert parse_price(text) == value


SEPARATORS = ".,' \u00a0\u202f"


@given(st.text(alphabet=st.sampled_from("0123456789.,  '-eE+₪$٢४\u00a0"), max_size=14))
def test_no_text_parses_to_a_price_its_digits_do_not_spell(text: str) -> None:
    """A price read from text is exactly its ASCII digits, in order, with 0-2 of them after a decimal separator."""
    price = parse_price(text)
    if price is None:
        return
    digits = [i for i, ch in enumerate(text) if ch in "0123456789"]
    number = text[digits[0] : digits[-1] + 1]
    assert all(ch.isdigit() or ch in SEPARATORS for ch in number), (text, price)
    last_group = re.split(f"[{SEPARATORS}]", number)[-1]
    places = len(last_group) if len(last_group) <= 2 and len(last_group) < len(number) else 0
    assert int(price * 100) == int("".join(ch for ch in number if ch.isdigit())) * 10 ** (2 - places), (text, price)
    assert price > 0


def test_unreadable_prices_are_unavailable_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    records = [
        {"name": "Dust", "price": "0.005", "url": "dust-i1"},
        {"name": "Star", "price": "1e309", "url": "star-i2"},
        {"name": "Huge", "price": "9" * 27, "url": "huge-i3"},
        {"name": "Arabic", "price": "٢٤", "url": "arabic-i4"},
        {"name": "Euro", "price": "1.299,90", "url": "euro-i5"},
        {"name": "Unpriced", "price": None, "url": "none-i6"},
    ]
    with caplog.at_level("INFO", logger="service.catalog"):
        store = build_store(records, store_id="t", name="T")
    prices = {p.name: p.price for p in store.products}
    assert prices == {"Dust": None, "Star": None, "Huge": None, "Arabic": None, "Euro": Decimal("1299.90"),
                      "Unpriced": None}  # fmt: skip
    assert not any(p.is_purchasable and p.price == 0 for p in store.products)
    assert "4 unreadable prices" in caplog.text and "5 without a price" in caplog.text, caplog.text


# ---------------------------------------------------------------- one bad store folder never takes the others down


def write_store(root: Path, store_id: str, products: object, meta: object = None, raw_meta: str | None = None) -> Path:
    folder = root / store_id
    (folder / "data").mkdir(parents=True)
    text = products if isinstance(products, str) else json.dumps(products)
    (folder / "data" / "products.json").write_text(text, encoding="utf-8")
    if raw_meta is not None or meta is not None:
        (folder / "store.json").write_text(raw_meta if raw_meta is not None else json.dumps(meta), encoding="utf-8")
    return folder


GOOD_RECORDS = {"products": [{"name": "Bread", "price": "2", "url": "b-i1"}, {"name": "Gold", "price": "9" * 27},
                             {"name": "Bad", "price": {"x": 1}}, {"name": ["list"]}]}  # fmt: skip
BAD_STORES = {
    "bad-meta-json": ({"products": []}, None, "{not json"),
    "bad-meta-list": ({"products": []}, ["a", "list"], None),
    "bad-meta-name": ({"products": []}, {"name": {"x": 1}, "currency": ["ILS"]}, None),
    "bad-products-json": ("[1, 2", None, None),
    "bad-products-shape": ({"products": {"a": 1}}, None, None),
    "bad-products-bytes": ("\udcff", None, None),
}


def make_stores(root: Path) -> Path:
    write_store(root, "good", GOOD_RECORDS, {"name": "Good", "currency": "EUR"})
    for store_id, (products, meta, raw_meta) in BAD_STORES.items():
        folder = write_store(root, store_id, "" if products == "\udcff" else products, meta, raw_meta)
        if products == "\udcff":
            (folder / "data" / "products.json").write_bytes(b'{"products": [{"name": "\xff\xfe"}]}')
    return root


def test_bad_store_folders_are_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="service.catalog"):
        catalog = load_catalog(make_stores(tmp_path))
    assert list(catalog.stores) == ["good"]
    assert [p.name for p in catalog.stores["good"].products] == ["Bread", "Gold", "Bad"]
    assert catalog.product("good:i1") is not None and catalog.stores["good"].currency == "EUR"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == len(BAD_STORES), [r.getMessage() for r in errors]
    for store_id in BAD_STORES:
        (line,) = [r.getMessage() for r in errors if f"/{store_id}/" in r.getMessage()]
        assert "skipped" in line and "\n" not in line, line
    assert not any(r.exc_info for r in caplog.records)
