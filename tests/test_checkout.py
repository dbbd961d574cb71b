"""checkout_link: templates from store.json, ~base64url for ids outside [A-Za-z0-9._-], links within 2,048 bytes
(several for a big cart), product pages for stores without a template, nothing secret in a link, and a property:
reading a link back gives the lines it was built from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from service.carts import CartStore
from service.catalog import CatalogError, load_catalog
from service.checkout import MAX_LINK_BYTES, NOTE, CheckoutTemplate, CheckoutTemplateError, decode, encode, pack
from service.config import Settings
from service.tools import Shop, create_server
from tests.test_tools import CATALOG, OATS, TAHINI
from tests.test_tools_cart_ids import Caller, everything

DEMO = CheckoutTemplate.parse(
    {"url": "https://demo-market.example.com/cart/{items}", "item": "{item}:{quantity}", "separator": ","}
)
BY_ID = CheckoutTemplate.parse(
    {"url": "https://shop.test/add?{items}&go=1", "item": "id={id}&q={quantity}", "separator": "&"}
)


def test_values_outside_the_safe_set_are_base64url() -> None:
    assert encode("1702") == "1702" and encode("a.b_c-D") == "a.b_c-D"
    assert encode("demo-market:i1702") == "~ZGVtby1tYXJrZXQ6aTE3MDI"
    assert encode("שוק:1").startswith("~") and decode(encode("שוק:1")) == "שוק:1"
    assert set(encode("a/b?c=d&e f")[1:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("https://x/{items}", "object"),
        ({"url": "ftp://x/{items}"}, "http"),
        ({"url": "https://x/cart"}, "{items}"),
        ({"url": "https://x/{items}/{items}"}, "{items}"),
        ({"url": "https://x/{items}", "item": "{item}"}, "{quantity}"),
        ({"url": "https://x/{items}", "item": "{item}{id}:{quantity}"}, "{quantity}"),
        ({"url": "https://x/{items}", "item": "{item}x{quantity}"}, "followed"),
        ({"url": "https://x/{items}", "separator": "-"}, "separator"),
        ({"url": "https://x/{items}", "separator": ""}, "non-empty"),
    ],
)
def test_templates_that_could_not_be_read_back_are_refused(raw: Any, why: str) -> None:
    with pytest.raises(CheckoutTemplateError, match=why.replace("{", r"\{").replace("}", r"\}")):
        CheckoutTemplate.parse(raw)


def test_a_bad_template_names_the_store_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "shop"
    (store / "data").mkdir(parents=True)
    (store / "data" / "products.json").write_text(
        json.dumps({"products": [{"name": "A", "price": 1, "url": "https://s/a-i1"}]})
    )
    (store / "store.json").write_text(json.dumps({"checkout": {"url": "https://s/cart"}}))
    with pytest.raises(CatalogError, match="no usable store"):
        load_catalog(tmp_path)
    assert "store.json': 'checkout.url' must be an http(s) URL holding {items} once" in caplog.text
    (store / "store.json").write_text(json.dumps({"checkout": {"url": "https://s/cart/{items}"}}))
    assert load_catalog(tmp_path).stores["shop"].checkout == CheckoutTemplate(
        "https://s/cart/{items}", "{item}:{quantity}", ","
    )


def test_bundled_store_has_a_template() -> None:
    assert CATALOG.stores["demo-market"].checkout == DEMO


def test_a_big_cart_gets_several_links_each_within_the_limit() -> None:
    lines = [(f"demo-market:i{1000000 + n}", 1 + n % 99) for n in range(400)]
    groups, unlinked = pack(DEMO, lines)
    assert unlinked == [] and len(groups) > 1
    assert [i for group in groups for i in group] == list(range(400))  # every line once, in cart order
    for group in groups:
        link = DEMO.link([DEMO.entry(*lines[i]) or "" for i in group])
        assert len(link.encode()) <= MAX_LINK_BYTES
        assert DEMO.read(link) == [(lines[i][0].split(":i")[1], lines[i][1]) for i in group]
    for group, following in zip(groups, groups[1:], strict=False):  # a link ends only when the next line won't fit
        link = DEMO.link([DEMO.entry(*lines[i]) or "" for i in group])
        assert len(link) + 1 + len(DEMO.entry(*lines[following[0]]) or "") > MAX_LINK_BYTES


def test_products_without_an_item_number_are_not_linked_by_item() -> None:
    groups, unlinked = pack(DEMO, [("demo-market:h1a2b3c4d", 1), ("demo-market:i7", 2)])
    assert groups == [[1]] and unlinked == [0]
    groups, unlinked = pack(BY_ID, [("demo-market:h1a2b3c4d", 1)])
    assert groups == [[0]] and unlinked == []
    huge = CheckoutTemplate.parse({"url": "https://s/" + "x" * 2030 + "/{items}"})
    assert pack(huge, [("s:i12345678901234567890", 1)]) == ([], [0])  # too long even alone


product_ids = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(lambda n: f"demo-market:i{n}"),
    st.text(min_size=1, max_size=40).map(lambda t: f"demo-market:{t}"),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(product_ids, st.integers(min_value=1, max_value=10**6)), max_size=150, unique_by=lambda x: x[0])
)
def test_property_reading_links_back_gives_the_lines(lines: list[tuple[str, int]]) -> None:
    for template in (DEMO, BY_ID):
        groups, unlinked = pack(template, lines)
        seen: list[int] = []
        for group in groups:
            link = template.link([template.entry(*lines[i]) or "" for i in group])
            assert len(link.encode("utf-8")) <= MAX_LINK_BYTES
            expected = [
                (lines[i][0].rsplit(":i", 1)[1] if template.wants_item_number else lines[i][0], lines[i][1])
                for i in group
            ]
            assert template.read(link) == expected
            seen += group
        assert sorted(seen + unlinked) == list(range(len(lines)))


# ---------------------------------------------------------------- the tool


@pytest.fixture
async def shop() -> Any:
    settings_ = Settings(_env_file=None)
    carts = CartStore.from_settings(settings_)
    yield Shop(catalog=CATALOG, carts=carts, settings=settings_)
    await carts.aclose()


async def test_checkout_link_answers_links_and_changes_nothing(shop: Shop) -> None:
    async with Client(create_server(shop)) as client:
        me = Caller(client)
        added = await me.ok("add_to_cart", {"sessionId": "chat"}, product_id=OATS, quantity=2)
        await me.ok("add_to_cart", {"sessionId": "chat"}, product_id=TAHINI)
        before = await everything(shop)
        result = await me.call("checkout_link", {"sessionId": "chat"})
        assert not result.is_error
        data = result.structured_content
        assert data["note"] == NOTE and "places no order" in result.content[0].text
        assert data["links"] == [
            {
                "store": "demo-market",
                "url": "https://demo-market.example.com/cart/1702:2,1701:1",
                "items": [{"id": OATS, "quantity": 2}, {"id": TAHINI, "quantity": 1}],
            }
        ]
        assert data["cart_id"] == added["cart_id"]
        assert added["cart_id"] not in json.dumps(data["links"]) and "chat" not in json.dumps(data["links"])
        assert await everything(shop) == before
        by_id = await me.ok("checkout_link", None, cart_id=added["cart_id"])
        assert by_id["links"] == data["links"]
        empty = await me.call("checkout_link", {"sessionId": "other"})
        assert empty.structured_content["links"] == [] and "nothing to check out" in empty.content[0].text
        assert "nothing to check out" in (await me.call("checkout_link")).content[0].text  # no cart named
        bad = await me.error("checkout_link", None, cart_id="wc_nope")
        assert "cart_id" in bad
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["checkout_link"].annotations is not None and tools["checkout_link"].annotations.read_only_hint


async def test_a_store_without_a_template_lists_product_pages(tmp_path: Path) -> None:
    store = tmp_path / "plain"
    (store / "data").mkdir(parents=True)
    records = [{"name": "Tea", "price": 5, "url": "https://plain.test/tea-i5"}, {"name": "Cup", "price": 3}]
    (store / "data" / "products.json").write_text(json.dumps({"products": records}))
    catalog = load_catalog(tmp_path)
    settings_ = Settings(_env_file=None)
    carts = CartStore.from_settings(settings_)
    shop = Shop(catalog=catalog, carts=carts, settings=settings_)
    cup = next(p.id for p in catalog.stores["plain"].products if p.name == "Cup")
    async with Client(create_server(shop)) as client:
        me = Caller(client)
        await me.ok("add_to_cart", {"sessionId": "c"}, product_id="plain:i5", quantity=3)
        await me.ok("add_to_cart", {"sessionId": "c"}, product_id=cup)
        result = await me.call("checkout_link", {"sessionId": "c"})
    await carts.aclose()
    assert result.structured_content["links"] == [
        {
            "store": "plain",
            "url": None,
            "items": sorted(
                [
                    {"id": "plain:i5", "quantity": 3, "url": "https://plain.test/tea-i5"},
                    {"id": cup, "quantity": 1, "url": None},
                ],
                key=lambda item: str(item["id"]),
            ),
        }
    ]
    assert "product pages" in result.content[0].text and "https://plain.test/tea-i5" in result.content[0].text
