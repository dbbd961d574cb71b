"""The two widget views (service/widgets/) in real headless Chromium, against a real ``weft-mcp serve``.

A test host page (tests/browser.py) speaks the host side of the MCP Apps bridge and forwards the view's
``tools/call`` over HTTP with no ``_meta``, so the only cart a view can reach is the ``cart_id`` it passes.
Server state is checked over HTTP after each click, never from the view alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import ServeProcess
from tests.browser import Host, call_tool, served_view, structured, write_store

pytestmark = pytest.mark.e2e

HOSTILE_NAME = "<img src=x onerror=window.__pwned=1>"
HOSTILE_SCRIPT_NAME = "<script>window.__pwned=2</script>Evil bread"


@pytest.fixture(scope="module")
def shop() -> Iterator[ServeProcess]:
    """The bundled demo store (ILS, a checkout template), embedded cart store, default ``mint`` fallback."""
    with ServeProcess() as process:
        yield process


def search(shop: ServeProcess, **arguments: Any) -> dict[str, Any]:
    return call_tool(shop, "search_products", arguments)


def new_cart(shop: ServeProcess, product_id: str, quantity: int = 1) -> dict[str, Any]:
    """A fresh cart (minted: no cart_id, no conversation id) holding one line; its cart answer."""
    return structured(call_tool(shop, "add_to_cart", {"product_id": product_id, "quantity": quantity}))


def quantities(shop: ServeProcess, cart_id: str) -> dict[str, int]:
    cart = structured(call_tool(shop, "view_cart", {"cart_id": cart_id}))
    assert cart["cart_id"] == cart_id
    return {item["id"]: item["quantity"] for item in cart["items"]}


def purchasable(shop: ServeProcess, query: str, count: int = 2) -> list[dict[str, Any]]:
    found = [p for p in structured(search(shop, search=query, page_size=50))["products"] if p["is_purchasable"]]
    assert len(found) >= count, (query, found)
    return found[:count]


def wait_idle(frame: Any) -> None:
    frame.wait_for_selector("#app[aria-busy='false']")


# ---------------------------------------------------------------- the grid


def test_grid_renders_a_real_search(host: Host, shop: ServeProcess) -> None:
    result = search(shop, search="organic", page_size=6)
    data = structured(result)
    frame = host.load("product-grid", toolInput={"search": "organic", "page_size": 6}, toolResult=result)
    frame.wait_for_selector("#grid .card")
    cards = frame.locator("#grid .card")
    assert cards.count() == len(data["products"]) == 6
    first = data["products"][0]
    card = frame.locator(f".card[data-product-id='{first['id']}']")
    assert card.locator(".name").inner_text() == first["name"]
    # The price comes from the decimal string, formatted for the locale (en-US here; ILS is the store's).
    price = card.locator(".price").inner_text()
    assert re.sub(r"[^\d.]", "", price) == first["price"], price
    add = card.locator("[data-action='add']")
    assert add.get_attribute("aria-label") == f"Add {first['name']} to cart"
    assert add.is_enabled()
    assert frame.locator("#summary").inner_text().startswith(f"{data['pagination']['totalProducts']} products")
    # The demo catalog's images are on an unreachable host: each falls back to its placeholder.
    frame.wait_for_function("() => document.querySelectorAll('.card .pic img').length === 0")
    assert frame.locator(".card .pic-placeholder").count() == 6
    # The bridge handshake as the standard has it.
    init = host.log("ui/initialize")[0]["params"]
    assert init["protocolVersion"] == "2026-01-26" and init["appInfo"]["name"] == "weft-product-grid"
    assert len(host.log("ui/notifications/initialized")) == 1


def test_unavailable_product_has_badge_and_no_add(host: Host, shop: ServeProcess) -> None:
    data = structured(search(shop, search="", page_size=50))
    missing = [p for p in data["products"] if not p["is_purchasable"]]
    assert missing, "the demo store lists a product without a price"
    frame = host.load("product-grid", toolResult={"structuredContent": data, "content": []})
    card = frame.locator(f".card[data-product-id='{missing[0]['id']}']")
    assert card.locator(".badge").inner_text() == "Unavailable"
    assert card.locator("[data-action='add']").is_disabled()
    assert card.locator(".price").count() == 0


def test_add_reaches_the_cart_the_result_names(host: Host, shop: ServeProcess) -> None:
    first, second = purchasable(shop, "organic")
    cart_id = new_cart(shop, first["id"])["cart_id"]
    other_id = new_cart(shop, first["id"])["cart_id"]  # another shopper's cart: must stay as it is
    result = search(shop, search="organic", page_size=12, cart_id=cart_id)
    assert structured(result)["cart_id"] == cart_id
    frame = host.load("product-grid", toolResult=result)
    card = frame.locator(f".card[data-product-id='{second['id']}']")
    card.locator("input.qty").fill("3")
    card.locator("[data-action='add']").click()
    frame.wait_for_function("() => document.getElementById('status').textContent.startsWith('Added')")
    assert quantities(shop, cart_id) == {first["id"]: 1, second["id"]: 3}
    assert quantities(shop, other_id) == {first["id"]: 1}
    assert host.calls == [
        {"name": "add_to_cart", "arguments": {"product_id": second["id"], "quantity": 3, "cart_id": cart_id}}
    ]
    # The model is told through ui/update-model-context, not a chat message.
    update = host.log("ui/update-model-context")[-1]["params"]
    assert update["structuredContent"]["cart_id"] == cart_id and update["structuredContent"]["item_count"] == 4
    assert update["content"][0]["text"].startswith("Cart now: 4 item(s)")
    assert host.log("ui/message") == []


def test_add_without_a_cart_keeps_the_minted_cart(host: Host, shop: ServeProcess) -> None:
    """No cart_id in the search: the first add mints a cart, and the next add passes that cart's id."""
    first, second = purchasable(shop, "organic")
    frame = host.load("product-grid", toolResult=search(shop, search="organic", page_size=12))
    frame.locator(f".card[data-product-id='{first['id']}'] [data-action='add']").click()
    frame.wait_for_function("() => document.getElementById('status').textContent.startsWith('Added')")
    wait_idle(frame)
    frame.locator(f".card[data-product-id='{second['id']}'] [data-action='add']").click()
    frame.wait_for_function("() => /Cart: 2 items/.test(document.getElementById('status').textContent)")
    assert "cart_id" not in host.calls[0]["arguments"]
    minted = host.calls[1]["arguments"]["cart_id"]
    assert minted.startswith("wc_")
    assert quantities(shop, minted) == {first["id"]: 1, second["id"]: 1}


def test_paging_next_and_previous(host: Host, shop: ServeProcess) -> None:
    page_1 = structured(search(shop, search="", page_size=5))
    page_2 = structured(search(shop, search="", page_size=5, page=2))
    frame = host.load("product-grid", toolResult={"structuredContent": page_1})
    assert frame.locator("[data-action='prev-page']").is_disabled()
    frame.locator("[data-action='next-page']").click()
    frame.wait_for_selector(f".card[data-product-id='{page_2['products'][0]['id']}']")
    ids = frame.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.productId)")
    assert ids == [p["id"] for p in page_2["products"]]
    assert host.calls[-1] == {"name": "search_products", "arguments": {"search": "", "page": 2, "page_size": 5}}
    frame.locator("[data-action='prev-page']").click()
    frame.wait_for_selector(f".card[data-product-id='{page_1['products'][0]['id']}']")
    assert host.calls[-1]["arguments"]["page"] == 1
    assert frame.locator("[data-action='prev-page']").is_disabled()


def test_empty_and_error_states(host: Host, shop: ServeProcess) -> None:
    empty = search(shop, search="zzqqxxnothing")
    assert structured(empty)["products"] == []
    frame = host.load("product-grid", toolResult=empty)
    state = frame.wait_for_selector("#state[data-state='empty']")
    assert state.inner_text() == "No products match “zzqqxxnothing”."
    assert frame.locator("#app").get_attribute("aria-busy") == "false"

    refused = search(shop, search="", page=999)
    assert refused["isError"] is True
    host.push_result(refused)
    state = frame.wait_for_selector("#state[data-state='error']")
    assert state.inner_text() == refused["content"][0]["text"]


def test_loading_state_until_the_result(host: Host) -> None:
    frame = host.load("product-grid", toolInput={"search": "milk"})
    state = frame.wait_for_selector("#state[data-state='loading']")
    assert state.inner_text() == "Loading…"
    assert frame.locator("#app").get_attribute("aria-busy") == "true"


def test_stripped_structured_content_calls_search_again(host: Host, shop: ServeProcess) -> None:
    """Claude Desktop strips structuredContent: the grid calls search_products with the tool input."""
    result = search(shop, search="milk", page_size=4)
    stripped = {"content": result["content"]}
    frame = host.load("product-grid", toolInput={"search": "milk", "page_size": 4}, toolResult=stripped)
    frame.wait_for_selector("#grid .card")
    assert host.calls == [{"name": "search_products", "arguments": {"search": "milk", "page": 1, "page_size": 4}}]
    ids = frame.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.productId)")
    assert ids == [p["id"] for p in structured(result)["products"]]


# ---------------------------------------------------------------- the cart


def cart_frame(host: Host, shop: ServeProcess, lines: int = 2, **config: Any) -> tuple[Any, str, list[str]]:
    products = purchasable(shop, "organic", lines)
    cart = new_cart(shop, products[0]["id"], 2)
    for product in products[1:]:
        cart = structured(call_tool(shop, "add_to_cart", {"product_id": product["id"], "cart_id": cart["cart_id"]}))
    frame = host.load("cart", toolResult={"structuredContent": cart}, **config)
    frame.wait_for_selector("#lines .line")
    return frame, cart["cart_id"], [p["id"] for p in products]


def test_cart_round_trips(host: Host, shop: ServeProcess) -> None:
    frame, cart_id, (a, b) = cart_frame(host, shop)
    assert frame.locator(".line").count() == 2

    def click(action: str, product_id: str | None = None) -> None:
        selector = f"[data-action='{action}']" + (f"[data-product-id='{product_id}']" if product_id else "")
        before = len(host.log("ui/update-model-context"))
        frame.locator(selector).click()
        host.page.wait_for_function(
            f"() => window.messagesFor('ui/update-model-context').length > {before}", timeout=5000
        )
        wait_idle(frame)

    click("increase", a)
    assert quantities(shop, cart_id) == {a: 3, b: 1}
    assert frame.locator(f".line[data-product-id='{a}'] .count").inner_text() == "3"
    click("decrease", a)
    assert quantities(shop, cart_id) == {a: 2, b: 1}
    click("decrease", b)  # 1 -> 0 removes the line
    assert quantities(shop, cart_id) == {a: 2}
    assert frame.locator(".line").count() == 1
    click("remove", a)
    assert quantities(shop, cart_id) == {}
    assert frame.locator("#state[data-state='empty']").inner_text() == "Your cart is empty."
    assert [c["name"] for c in host.calls] == ["update_cart_item"] * 3 + ["remove_from_cart"]
    assert all(c["arguments"]["cart_id"] == cart_id for c in host.calls)
    assert host.calls[2]["arguments"] == {"product_id": b, "quantity": 0, "cart_id": cart_id}
    contexts = host.log("ui/update-model-context")
    assert [m["params"]["structuredContent"]["item_count"] for m in contexts] == [4, 3, 2, 0]
    assert all(m["params"]["structuredContent"]["cart_id"] == cart_id for m in contexts)
    assert host.log("ui/message") == []


def test_cart_clear(host: Host, shop: ServeProcess) -> None:
    frame, cart_id, _ = cart_frame(host, shop)
    frame.locator("[data-action='clear']").click()
    frame.wait_for_selector("#state[data-state='empty']")
    assert quantities(shop, cart_id) == {}
    assert host.calls == [{"name": "clear_cart", "arguments": {"cart_id": cart_id}}]


def test_cart_totals_and_labels(host: Host, shop: ServeProcess) -> None:
    frame, cart_id, (a, _) = cart_frame(host, shop)
    cart = structured(call_tool(shop, "view_cart", {"cart_id": cart_id}))
    total = frame.locator("#totals .price").inner_text()
    assert re.sub(r"[^\d.]", "", total) == cart["total"], total
    assert "₪" in total  # ILS, formatted by Intl.NumberFormat
    name = next(i["name"] for i in cart["items"] if i["id"] == a)
    assert frame.locator(f"[data-action='increase'][data-product-id='{a}']").get_attribute("aria-label") == (
        f"Increase quantity of {name}"
    )
    assert frame.locator("[role='status'][aria-live='polite']").count() == 1
    # Keyboard: Tab reaches the buttons, and the focused one shows a ring.
    frame.locator(f"[data-action='decrease'][data-product-id='{a}']").focus()
    host.page.keyboard.press("Tab")
    focused = frame.evaluate("() => document.activeElement.dataset.action")
    outline = frame.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert focused == "increase" and outline == "solid"


def test_share_shows_a_code_that_claims(host: Host, shop: ServeProcess) -> None:
    frame, cart_id, (a, b) = cart_frame(host, shop)
    frame.locator("[data-action='share']").click()
    code = frame.wait_for_selector("#share-code").inner_text()
    assert host.calls == [{"name": "share_cart", "arguments": {"cart_id": cart_id}}]
    assert frame.locator(".line").count() == 2  # the lines stay
    target = new_cart(shop, a, 1)["cart_id"]
    claimed = structured(call_tool(shop, "claim_cart", {"code": code, "cart_id": target, "mode": "replace"}))
    assert {i["id"]: i["quantity"] for i in claimed["items"]} == {a: 2, b: 1}
    assert host.log("ui/message") == []


def test_checkout_opens_the_store_link(host: Host, shop: ServeProcess) -> None:
    frame, cart_id, _ = cart_frame(host, shop)
    expected = structured(call_tool(shop, "checkout_link", {"cart_id": cart_id}))["links"]
    frame.locator("[data-action='checkout']").click()
    host.page.wait_for_function("() => window.messagesFor('ui/open-link').length > 0")
    opened = [m["params"]["url"] for m in host.log("ui/open-link")]
    assert opened == [link["url"] for link in expected]
    assert all(url.startswith("https://demo-market.example.com/cart/") for url in opened)
    assert host.calls == [{"name": "checkout_link", "arguments": {"cart_id": cart_id}}]
    assert frame.locator("#checkout").inner_text().startswith("Opening a link places no order")


def test_cart_stripped_result_views_the_cart_again(host: Host, shop: ServeProcess) -> None:
    products = purchasable(shop, "organic", 1)
    cart = new_cart(shop, products[0]["id"], 5)
    frame = host.load("cart", toolInput={"cart_id": cart["cart_id"]}, toolResult={"content": [{"type": "text"}]})
    frame.wait_for_selector("#lines .line")
    assert host.calls == [{"name": "view_cart", "arguments": {"cart_id": cart["cart_id"]}}]
    assert frame.locator(".line .count").inner_text() == "5"


def test_cart_shared_fallback_note_and_error(host: Host, shop: ServeProcess) -> None:
    cart = structured(call_tool(shop, "view_cart", {}))
    cart["session"]["shared"] = True  # as the "default" fallback cart answers
    cart["items"] = []
    frame = host.load("cart", toolResult={"structuredContent": cart})
    note = frame.wait_for_selector("#shared-note")
    assert "shared fallback cart" in note.inner_text()
    refused = call_tool(shop, "update_cart_item", {"product_id": "nope:i1", "quantity": 1})
    assert refused["isError"] is True
    frame = host.load("cart", toolResult=refused)
    state = frame.wait_for_selector("#state[data-state='error']")
    assert state.inner_text() == refused["content"][0]["text"]


def test_size_changed_reported(host: Host, shop: ServeProcess) -> None:
    frame, _, _ = cart_frame(host, shop)
    host.page.wait_for_function("() => window.messagesFor('ui/notifications/size-changed').length > 0")
    size = host.log("ui/notifications/size-changed")[-1]["params"]
    height = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
    assert size["height"] == height > 100 and size["width"] > 100


# ---------------------------------------------------------------- theme, language


def colours(frame: Any) -> tuple[str, str]:
    """The body's computed background and text colours."""
    script = "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
    background, text = frame.evaluate(script)
    return background, text


def test_dark_and_light_follow_the_host(host: Host, shop: ServeProcess) -> None:
    result = search(shop, search="milk", page_size=4)
    frame = host.load("product-grid", theme="light", toolResult=result)
    frame.wait_for_selector("#grid .card")
    light = colours(frame)
    frame = host.load("product-grid", theme="dark", toolResult=result)
    frame.wait_for_selector("#grid .card")
    dark = colours(frame)
    assert light != dark and light[0] == "rgb(255, 255, 255)" and dark[0] != "rgb(255, 255, 255)"
    assert frame.evaluate("() => document.documentElement.dataset.theme") == "dark"
    # The host's variables win over the view's fallbacks, and a context change re-applies them.
    variables = {"--color-background-primary": "rgb(1, 2, 3)", "--color-text-primary": "rgb(250, 240, 230)"}
    host.push_context({"theme": "light", "styles": {"variables": variables}})
    frame.wait_for_function("() => getComputedStyle(document.body).backgroundColor === 'rgb(1, 2, 3)'")
    assert colours(frame) == ("rgb(1, 2, 3)", "rgb(250, 240, 230)")
    assert frame.evaluate("() => document.documentElement.dataset.theme") == "light"


def test_right_to_left_in_hebrew(host: Host, shop: ServeProcess) -> None:
    result = search(shop, search="organic", page_size=4)
    frame = host.load("product-grid", locale="he-IL", toolResult=result)
    frame.wait_for_selector("#grid .card")
    assert frame.evaluate("() => [document.documentElement.dir, document.documentElement.lang]") == ["rtl", "he-IL"]
    add = frame.locator("[data-action='add']").first
    assert add.inner_text() == "הוספה"
    qty = frame.locator("input.qty").first.bounding_box()
    button = add.bounding_box()
    assert qty["x"] > button["x"], "right to left: the quantity comes first, on the right"
    card = frame.locator(".card").first.bounding_box()
    first_card_right = card["x"] + card["width"]
    assert first_card_right > 700, "the first card sits at the right edge"
    price = frame.locator(".price").first.inner_text()
    first = structured(result)["products"][0]
    # With the product's currency (the store's) the amount carries its sign; without it, a plain amount.
    assert ("₪" in price) == (first.get("currency") == "ILS"), (price, first)

    frame = host.load("product-grid", locale="en-US", toolResult=result)
    frame.wait_for_selector("#grid .card")
    assert frame.evaluate("() => document.documentElement.dir") == "ltr"
    qty, button = (
        frame.locator("input.qty").first.bounding_box(),
        frame.locator("[data-action='add']").first.bounding_box(),
    )
    assert qty["x"] < button["x"]


def test_cart_in_hebrew_right_to_left(host: Host, shop: ServeProcess) -> None:
    frame, _, (a, _) = cart_frame(host, shop, locale="he")
    assert frame.evaluate("() => document.documentElement.dir") == "rtl"
    assert frame.locator("[data-action='checkout']").inner_text() == "לתשלום"
    line = frame.locator(f".line[data-product-id='{a}']")
    pic, total = line.locator(".pic").bounding_box(), line.locator(".line-total").bounding_box()
    assert pic["x"] > total["x"], "the picture starts the line, on the right"


# ---------------------------------------------------------------- hostile catalog text and links


@pytest.fixture(scope="module")
def hostile_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("hostile-stores")
    products = [
        {
            "name": HOSTILE_NAME,
            "price": "5",
            "category": "<b>bold</b>",
            "url": "javascript:alert(1)-i1",
            "image": "javascript:window.__pwned=3",
        },
        {
            "name": HOSTILE_SCRIPT_NAME,
            "price": "7.5",
            "category": "bread",
            "url": "https://shop.test/bread-i2",
            "image": 'https://shop.test/x.jpg" onerror="window.__pwned=4',
        },
    ]
    write_store(root, "evil", products, name="Evil", currency="USD", base_url="https://shop.test/")
    with ServeProcess(env={"WEFT_STORES_DIR": str(root)}) as process:
        yield process


def pwned(frame: Any) -> Any:
    return frame.evaluate("() => window.__pwned === undefined ? null : window.__pwned")


def test_hostile_names_stay_text(context: Any, hostile_shop: ServeProcess) -> None:
    host = Host(context.new_page(), hostile_shop)
    result = search(hostile_shop, search="", page_size=10)
    data = structured(result)
    assert {p["name"] for p in data["products"]} == {HOSTILE_NAME, HOSTILE_SCRIPT_NAME}
    frame = host.load("product-grid", toolResult=result)
    frame.wait_for_selector("#grid .card")
    host.page.wait_for_timeout(300)  # an injected onerror would have fired by now
    names = frame.eval_on_selector_all(".card .name", "nodes => nodes.map(n => n.textContent)")
    assert sorted(names) == sorted([HOSTILE_NAME, HOSTILE_SCRIPT_NAME])
    assert frame.evaluate("() => document.querySelectorAll('.card .name img, .card .name script, b').length") == 0
    assert pwned(frame) is None and pwned(host.page) is None
    # Add the hostile product and show it in the cart: still text.
    frame.locator("[data-action='add']").first.click()
    frame.wait_for_function("() => document.getElementById('status').textContent.startsWith('Added')")
    cart_id = (
        host.calls[-1]["arguments"].get("cart_id")
        or host.log("ui/update-model-context")[-1]["params"]["structuredContent"]["cart_id"]
    )
    cart = call_tool(hostile_shop, "view_cart", {"cart_id": cart_id})
    frame = host.load("cart", toolResult=cart)
    frame.wait_for_selector("#lines .line")
    host.page.wait_for_timeout(300)
    assert frame.locator(".line .name").first.inner_text() in (HOSTILE_NAME, HOSTILE_SCRIPT_NAME)
    assert pwned(frame) is None and pwned(host.page) is None


def test_javascript_links_are_never_set_or_followed(host: Host, shop: ServeProcess) -> None:
    """The catalog drops non-http links; a result that carries them anyway (another server, a proxy) still
    gets no href or src, and no ui/open-link, from the views."""
    product = {
        "id": "x:i1",
        "name": "Trap",
        "price": "1.00",
        "category": "c",
        "is_purchasable": True,
        "currency": "USD",
        "url": "javascript:window.top.__pwned=5",
        "image": "javascript:window.__pwned=6",
    }
    data = {
        "cart_id": None,
        "products": [
            product,
            dict(product, id="x:i2", url="JAVASCRIPT:alert(1)", image="data:image/svg+xml,<svg onload=alert(1)>"),
        ],
        "pagination": {
            "currentPage": 1,
            "totalPages": 1,
            "pageSize": 12,
            "totalProducts": 2,
            "hasNext": False,
            "hasPrev": False,
        },
        "filters": {"search": "", "category": None, "store": None},
    }
    frame = host.load("product-grid", toolResult={"structuredContent": data})
    frame.wait_for_selector("#grid .card")
    assert frame.evaluate("() => document.querySelectorAll('a, img').length") == 0
    for name in frame.locator(".card .name").all():
        name.click()
    cart = {
        "cart_id": "wc_x",
        "session": {"id": None, "source": "cart_id", "shared": False},
        "items": [
            {
                "id": "x:i1",
                "name": "Trap",
                "price": "1.00",
                "quantity": 1,
                "line_total": "1.00",
                "url": "javascript:window.__pwned=7",
                "image": "javascript:window.__pwned=8",
            }
        ],
        "item_count": 1,
        "total": "1.00",
        "currency": "USD",
        "damaged_lines": 0,
    }
    frame = host.load("cart", toolResult={"structuredContent": cart})
    frame.wait_for_selector("#lines .line")
    assert frame.evaluate("() => document.querySelectorAll('a, img').length") == 0
    frame.locator(".line .name").click()
    # A checkout answer with a javascript: link: listed as nothing, opened never.
    host.push_result(
        {
            "structuredContent": {
                "cart_id": "wc_x",
                "note": "n",
                "links": [
                    {
                        "store": "x",
                        "url": "javascript:window.__pwned=9",
                        "items": [{"id": "x:i1", "quantity": 1, "url": "javascript:alert(1)"}],
                    }
                ],
            }
        }
    )
    frame.wait_for_selector("#checkout")
    assert frame.evaluate("() => document.querySelectorAll('a[href], img[src]').length") == 0
    host.page.wait_for_timeout(200)
    assert host.log("ui/open-link") == []
    assert pwned(frame) is None and pwned(host.page) is None
    assert host.page.url == "about:blank"


# ---------------------------------------------------------------- ChatGPT: window.openai and no bridge


WIDGET_URL = "http://widget.test/view.html"
OPENAI_SHIM = """
window.__openaiCalls = [];
window.__opened = [];
window.openai = {
  theme: "dark", locale: "en-US", toolInput: {search: "organic"}, toolOutput: null,
  callTool: async function (name, args) {
    window.__openaiCalls.push({name: name, args: args});
    return await window.forward_tool(name, args);
  },
  openExternal: function (options) { window.__opened.push(options.href); },
  setWidgetState: function (state) { window.__widgetState = state; },
  sendFollowUpMessage: function () { window.__followUps = (window.__followUps || 0) + 1; },
};
"""


def open_page(page: Any, html: str) -> None:
    """Serve ``html`` as a top-level document (a fresh one, so init scripts such as the shim run in it)."""
    page.route(WIDGET_URL, lambda route: route.fulfill(body=html, content_type="text/html; charset=utf-8"))
    page.goto(WIDGET_URL)


def test_window_openai_only(context: Any, shop: ServeProcess) -> None:
    """No MCP Apps bridge (the view is the top window, as ChatGPT's own API gives it): toolOutput set late
    through openai:set_globals renders, and add goes through window.openai.callTool with the cart_id."""
    first = purchasable(shop, "organic", 1)[0]
    cart_id = new_cart(shop, first["id"])["cart_id"]
    page = context.new_page()
    page.expose_function("forward_tool", lambda name, args: call_tool(shop, name, args))
    page.add_init_script(OPENAI_SHIM)
    open_page(page, served_view("product-grid"))
    page.wait_for_selector("#state[data-state='loading']")
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    output = structured(search(shop, search="organic", page_size=6, cart_id=cart_id))
    page.evaluate(
        """(output) => {
          window.openai.toolOutput = output;
          window.dispatchEvent(new CustomEvent("openai:set_globals", {detail: {globals: {toolOutput: output}}}));
        }""",
        output,
    )
    page.wait_for_selector("#grid .card")
    page.locator(f".card[data-product-id='{first['id']}'] [data-action='add']").click()
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Added')")
    assert quantities(shop, cart_id) == {first["id"]: 2}
    calls = page.evaluate("() => window.__openaiCalls")
    assert calls == [{"name": "add_to_cart", "args": {"product_id": first["id"], "quantity": 1, "cart_id": cart_id}}]
    assert page.evaluate("() => window.__widgetState.data.cart_id") == cart_id
    assert page.evaluate("() => window.__followUps || 0") == 0


def test_window_openai_cart_checkout_and_initial_output(context: Any, shop: ServeProcess) -> None:
    """toolOutput already there at start; checkout opens through window.openai.openExternal."""
    first = purchasable(shop, "organic", 1)[0]
    cart = new_cart(shop, first["id"], 2)
    page = context.new_page()
    page.expose_function("forward_tool", lambda name, args: call_tool(shop, name, args))
    page.add_init_script(OPENAI_SHIM + f"window.openai.toolOutput = {json.dumps(cart)};")
    open_page(page, served_view("cart"))
    page.wait_for_selector("#lines .line")
    page.locator("[data-action='checkout']").click()
    page.wait_for_function("() => window.__opened.length > 0")
    opened = page.evaluate("() => window.__opened")
    assert opened and all(url.startswith("https://demo-market.example.com/cart/") for url in opened)


def test_silent_bridge_falls_back_to_window_openai(host: Host, shop: ServeProcess) -> None:
    """In a frame whose host never answers ui/initialize, a view with window.openai uses it after ~1 s."""
    result = structured(search(shop, search="milk", page_size=3))
    html = served_view("product-grid").replace(
        "<head>",
        "<head><script>window.openai = {theme: 'light', locale: 'he', toolOutput: "
        + json.dumps(result).replace("</", "<\\/")
        + "};</script>",
        1,
    )
    host.page.evaluate("([html, config]) => window.loadView(html, config)", [html, {"silent": True}])
    frame = host.page.wait_for_selector("iframe").content_frame()
    frame.wait_for_selector("#grid .card", timeout=5000)
    assert frame.evaluate("() => document.documentElement.dir") == "rtl"
    assert len(host.log("ui/initialize")) == 1 and host.log("ui/notifications/initialized") == []


def test_views_reference_the_shared_parts_once() -> None:
    for name in ("product-grid", "cart"):
        html = served_view(name)
        assert "<link" not in html and "<script src" not in html, name
        assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html


def test_served_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    sizes = {name: len(served_view(name).encode("utf-8")) for name in ("product-grid", "cart")}
    with capsys.disabled():
        print(f"\nserved view sizes (bytes): {sizes}")
    assert all(10_000 < size < 60_000 for size in sizes.values()), sizes
