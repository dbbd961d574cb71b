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
from service.catalog_text import clean_text, web_link


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
    [
        ("24.4", "24.40"),
        (24.4, "24.40"),
        (7, "7.00"),
        ("12,90", "12.90"),
        ("1,299", "1299.00"),
        ("₪19.9 ", "19.90"),
        (None, None),
        ("", None),
        ("n/a", None),
        ("0", None),
        ("-3", None),
        (True, None),
    ],
)
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
    [
        ("1.299,90", "1299.90"),
        ("1,299.90", "1299.90"),
        (f"1{NBSP}299,90", "1299.90"),
        (f"1{NARROW_NBSP}299,90", "1299.90"),
        ("1 299,90", "1299.90"),
        ("1'299.90", "1299.90"),
        ("1.299", "1299.00"),
        ("12.345.678,5", "12345678.50"),
        ("1,234,567", "1234567.00"),
        ("24,40", "24.40"),
        ("0.01", "0.01"),
        ("0,5", "0.50"),
        ("1299", "1299.00"),
        ("24.444", "24444.00"),
        ("₪ 1.299,90", "1299.90"),
        ("1,299.90 ₪", "1299.90"),
        ("ILS 24.40", "24.40"),
        ("24.40 NIS", "24.40"),
        ("Rs. 24.40", "24.40"),
        (24, "24.00"),
        (24.4, "24.40"),
        (0.1, "0.10"),
        ("  7 ", "7.00"),
    ],
)
def test_parse_price_reads_real_shop_formats_exactly(raw: object, expected: str) -> None:
    assert str(parse_price(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "0.005",
        "1e309",
        "1e5",
        "1E+20",
        "2e-2",
        1e20,
        1e309,
        float("nan"),
        float("inf"),
        0.005,
        24.444,
        "1.299,905",
        "٢٤",
        "٢٤.٥٠",
        "2٤",
        "२४",
        "２４",
        "12.3.4",
        "1,2,3",
        "1.29.90",
        "12,34,567",
        "01,299",
        "1,2990",
        "1.299.90",
        "1,299,90",
        "-5",
        "5-",
        "10-20",
        "10 - 20",
        "- 5",
        "0",
        "0.00",
        "0,00",
        "00",
        "-0.01",
        "1" * 13,
        "9" * 27,
        10**27,
        "1" * 27 + ".50",
        "24.40.",
        ".5",
        "5.",
        "1,,299",
        "1.,299",
        "1 299.90 2",
        "24.40 ₪ 3",
        "Infinity",
        "NaN",
        "sNaN",
        "0x1A",
        "1_000",
        "½",
        "²",
        True,
        False,
        None,
        "",
        "  ",
        [24],
        {"price": 24},
    ],
)
def test_parse_price_refuses_anything_it_cannot_read_exactly(raw: object) -> None:
    """Exponents, more than two decimals, other scripts' digits, signs, ranges, ambiguity or absurd size: no price."""
    assert parse_price(raw) is None


@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2),
    st.sampled_from(
        [(",", "."), (".", ","), (" ", ","), (NBSP, ","), (NARROW_NBSP, ","), ("'", "."), ("", "."), ("", ",")]
    ),
    st.sampled_from(
        [
            ("", ""),
            ("₪", ""),
            ("₪ ", ""),
            ("", "₪"),
            ("", " ₪"),
            ("ILS ", ""),
            ("", " ILS"),
            ("$", ""),
            ("NIS ", ""),
            ("", " NIS"),
            ("", ' ש"ח'),
            ("R$ ", ""),
            ("US$", ""),
        ]
    ),
)
def test_any_two_place_price_in_any_grouping_style_parses_back_to_itself(
    value: Decimal, style: tuple[str, str], currency: tuple[str, str]
) -> None:
    """Symbols may touch the number; codes and words are separated from it by a space."""
    thousands, decimal = style
    whole, cents = f"{value:.2f}".split(".")
    groups = [whole[max(0, end - 3) : end] for end in range(len(whole), 0, -3)][::-1]
    text = currency[0] + thousands.join(groups) + decimal + cents + currency[1]
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
    assert prices == {
        "Dust": None,
        "Star": None,
        "Huge": None,
        "Arabic": None,
        "Euro": Decimal("1299.90"),
        "Unpriced": None,
    }
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


GOOD_RECORDS = {
    "products": [
        {"name": "Bread", "price": "2", "url": "b-i1"},
        {"name": "Gold", "price": "9" * 27},
        {"name": "Bad", "price": {"x": 1}},
        {"name": ["list"]},
    ]
}
BAD_STORES = {
    "bad-meta-json": ({"products": []}, None, "{not json"),
    "bad-meta-list": ({"products": []}, ["a", "list"], None),
    "bad-meta-name": ({"products": []}, {"name": {"x": 1}, "currency": ["ILS"]}, None),
    "bad-products-json": ("[1, 2", None, None),
    "bad-products-shape": ({"products": {"a": 1}}, None, None),
    "bad-products-bytes": ("\udcff", None, None),
    "bad-meta-folder": ({"products": []}, None, None),  # store.json is a folder
}


def make_stores(root: Path) -> Path:
    write_store(root, "good", GOOD_RECORDS, {"name": "Good", "currency": "EUR"})
    for store_id, (products, meta, raw_meta) in BAD_STORES.items():
        folder = write_store(root, store_id, "" if products == "\udcff" else products, meta, raw_meta)
        if products == "\udcff":
            # undecodable bytes in the file's own structure (in a record they cost only that record)
            (folder / "data" / "products.json").write_bytes(b'{"products": [{"name": "x"}] \xff\xfe}')
        if store_id == "bad-meta-folder":
            (folder / "store.json").mkdir()
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


# ---------------------------------------------------------------- prices: JSON numbers as their text, strict currency


def load_raw_products(tmp_path: Path, records_text: str) -> dict[str, Decimal | None]:
    """``records_text`` (the JSON text of the records, written as is) loaded as a store: price by product name."""
    path = tmp_path / "products.json"
    path.write_text('{"scrapedAt": "x", "products": [' + records_text + "]}", encoding="utf-8")
    return {p.name: p.price for p in load_products_file(path, store_id="raw").products}


JSON_NUMBER_PRICES = {
    "19.999999999999999": None,
    "0.009999999999999999999": None,
    "0.0100000000000000001": None,
    "24.400": "24.40",
    "24.4": "24.40",
    "7": "7.00",
    "0.01": "0.01",
    "12.3000000000000": "12.30",
    "1e5": None,
    "1E2": None,
    "1.5e1": None,
    "0.1e-1": None,
    "2E+0": None,
    "-3": None,
    "-0.5": None,
    "0": None,
    "0.00": None,
    "999999999999.99": "999999999999.99",
    "1000000000000": None,
    "9" * 5000: None,
    "1" + "0" * 400 + ".5": None,
}


def test_json_number_prices_are_read_from_their_text(tmp_path: Path) -> None:
    """A JSON number is its literal text: a float would round 19.999999999999999 up to 20.00."""
    records = ",".join(f'{{"name": "p{i}", "price": {text}}}' for i, text in enumerate(JSON_NUMBER_PRICES))
    prices = load_raw_products(tmp_path, records)
    expected = {f"p{i}": None if want is None else Decimal(want) for i, want in enumerate(JSON_NUMBER_PRICES.values())}
    assert prices == expected


def test_numeric_names_and_links_are_still_not_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="service.catalog"):
        prices = load_raw_products(
            tmp_path, '{"name": 12, "price": 3}, {"name": "Tea", "price": 3, "category": 5, "url": 7, "image": 1.5}'
        )
    assert prices == {"Tea": Decimal("3.00")}
    assert "1 without a name" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        "12.5k",
        "1.2M",
        "2x",
        "5kg",
        "5 kg",
        "12.5 k",
        "24.40 per kg",
        "from 24.40",
        "NIS24.40",
        "24.40NIS",
        "24ILS",
        "approx 24",
        "24 each",
        "x24",
        "24.40 ₪ each",
        "ab 24",
        "24 abcd",
        "₪24 x2",
    ],
)
def test_letters_around_a_price_that_are_no_currency_make_it_unavailable(raw: str) -> None:
    assert parse_price(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('24.40 ש"ח', "24.40"),
        ("24.40 ש״ח", "24.40"),
        ("24.40 שח", "24.40"),
        ('ש"ח 24.40', "24.40"),
        ("Rs 24", "24.00"),
        ("Rs. 24", "24.00"),
        ("R$ 24,40", "24.40"),
        ("US$24", "24.00"),
        ("€24", "24.00"),
        ("24 €", "24.00"),
        ("24.40 EUR", "24.40"),
        ("CHF 24.40", "24.40"),
        ("24,40 zł", "24.40"),
        ("24 kr", "24.00"),
        ("₪\u00a024.40", "24.40"),
        ("24.40\u00a0NIS", "24.40"),
        ("usd 5", "5.00"),
    ],
)
def test_real_currency_text_is_read(raw: str, expected: str) -> None:
    assert str(parse_price(raw)) == expected


def test_real_catalog_prices_are_unchanged(real: Catalog) -> None:
    """The real scraped catalog's priced products and prices, as measured before prices were made stricter."""
    priced = [p for p in real.stores["nitzat"].products if p.price is not None]
    assert (len(priced), sum(p.price for p in priced if p.price)) == (697, Decimal("14549.10"))


# ---------------------------------------------------------------- one bad record is skipped, never the store

DEEP = 100_000
DIRTY_RECORDS = [
    '{"name": "Bread", "price": "2", "url": "b-i1"}',
    '{"name": "Deep", "price": 1, "category": ' + "[" * DEEP + "]" * DEEP + "}",
    '{"name": "Digits", "price": ' + "9" * 5000 + ', "url": "d-i3"}',
    '{"name": "Comma", "price": 1,}',
    '{"name": "Deep \\"]} object", "price": 1, "x": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    '{"name": "Milk", "price": 5, "url": "m-i6"}',
]


def write_dirty_store(root: Path, store_id: str = "dirty", *, top_level_list: bool = False, bom: bool = True) -> Path:
    """A store whose products.json (with a UTF-8 BOM) holds good records among ones no JSON parser reads whole."""
    folder = root / store_id
    (folder / "data").mkdir(parents=True)
    listed = "[\n  " + ",\n  ".join(DIRTY_RECORDS) + "\n]"
    text = listed if top_level_list else '{"scrapedAt": "x", "products": ' + listed + ', "more": [1, {"a": [2]}]}'
    (folder / "data" / "products.json").write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    (folder / "store.json").write_text("\ufeff" + json.dumps({"name": "Dirty", "currency": "EUR"}), encoding="utf-8")
    return root


@pytest.mark.parametrize("top_level_list", [False, True])
def test_unreadable_records_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, top_level_list: bool
) -> None:
    with caplog.at_level("INFO", logger="service.catalog"):
        catalog = load_catalog(write_dirty_store(tmp_path, top_level_list=top_level_list))
    store = catalog.stores["dirty"]
    assert (store.name, store.currency) == ("Dirty", "EUR")
    assert {p.name: p.price for p in store.products} == {
        "Bread": Decimal("2.00"),
        "Digits": None,
        "Milk": Decimal("5.00"),
    }
    assert catalog.product("dirty:5") is catalog.product("dirty:i6")  # positions still count the skipped records
    assert "3 unreadable records" in caplog.text, caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("top_level_list", [False, True])
def test_a_record_with_bytes_that_are_not_utf8_skips_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, top_level_list: bool
) -> None:
    """Undecodable bytes inside one record used to fail the file's decoding, so the whole store was skipped."""
    good = [json.dumps({"name": f"Good {n}", "price": "2.00", "url": f"https://s.test/g-i{n}"}) for n in (1, 2)]
    bad = b'{"name": "Bad \xff\xfe\xc3(", "price": "3.00", "url": "https://s.test/b-i9"}'
    records = b"[" + b", ".join([good[0].encode(), bad, good[1].encode()]) + b"]"
    folder = tmp_path / "bytes" / "data"
    folder.mkdir(parents=True)
    (folder / "products.json").write_bytes(records if top_level_list else b'{"products": ' + records + b"}")
    with caplog.at_level("INFO", logger="service.catalog"):
        catalog = load_catalog(tmp_path)
    assert [p.name for p in catalog.stores["bytes"].products] == ["Good 1", "Good 2"]
    assert catalog.product("bytes:2") is catalog.product("bytes:i2")  # the skipped record keeps its position
    assert "1 unreadable records" in caplog.text, caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ---------------------------------------------------------------- catalog text: separators, invisible characters, links


@pytest.mark.parametrize(
    ("raw", "one_line", "multiline"),
    [
        ("Tea\u2028Green", "Tea Green", "Tea\nGreen"),
        ("Tea\u2029Green", "Tea Green", "Tea\nGreen"),
        ("\ufeffTea", "Tea", "Tea"),
        ("T\u200bea", "Tea", "Tea"),
        ("T\u2060e\u2064a", "Tea", "Tea"),
        ("Tea\U000e0049\U000e0047\U000e004e", "Tea", "Tea"),
        ("Tea\u206a\ufff9x\ufffb", "Teax", "Teax"),
        (
            "\u200fשלום\u200e \u200d👨\u200d👩 fa\u200cx",
            "\u200fשלום\u200e \u200d👨\u200d👩 fa\u200cx",
            "\u200fשלום\u200e \u200d👨\u200d👩 fa\u200cx",
        ),
    ],
)
def test_clean_text_breaks_lines_and_drops_invisible_characters(raw: str, one_line: str, multiline: str) -> None:
    """Line/paragraph separators are line breaks; characters that only hide text go; marks and joiners stay."""
    assert clean_text(raw) == one_line
    assert clean_text(raw, multiline=True) == multiline


@pytest.mark.parametrize(
    ("link", "base", "expected"),
    [
        (" https://shop.test/a.png ", None, "https://shop.test/a.png"),
        ("\thttps://shop.test/a.png\n", None, "https://shop.test/a.png"),
        ("  /img/a.png ", "https://base.example/", "https://base.example/img/a.png"),
        ("/img/a.png", "https://base.example/shop/", "https://base.example/shop/img/a.png"),
        ("img/a.png", "https://base.example/shop/", "https://base.example/shop/img/a.png"),
        ("//evil.example/a.png", "https://base.example/", "https://evil.example/a.png"),
        ("//evil.example/a.png", "http://base.example/x/", "http://evil.example/a.png"),
        (" //cdn.example/a.png", None, "https://cdn.example/a.png"),
        ("https://shop.test/a b.png", None, None),
        ("///x.png", "https://base.example/", None),
        ("javascript:alert(1)", "https://base.example/", None),
        ("   ", "https://base.example/", None),
    ],
)
def test_web_links_are_trimmed_and_resolved_as_browsers_do(link: str, base: str | None, expected: str | None) -> None:
    assert web_link(link, base) == expected
