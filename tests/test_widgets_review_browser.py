"""What an adversarial review of the widgets (issue 12) found in real headless Chromium, one test per defect.

The views run in tests/browser.py's host page (or the playground at ``GET /``) against a real ``weft-mcp serve``;
the cart each click reached is read back from the server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ServeProcess
from tests.browser import Host, call_tool, structured, write_store

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Two stores with different currencies (EUR, GBP), embedded cart store, fallback ``mint``."""
    root = tmp_path_factory.mktemp("review-stores")
    for store, currency in (("euro", "EUR"), ("pound", "GBP")):
        products = [
            {
                "name": f"{currency} cheese {n}",
                "price": "4.2",
                "category": "cheese",
                "url": f"https://{store}.example/cheese-{n}",
                "image": None,
            }
            for n in range(3)
        ]
        write_store(root, store, products, name=store, currency=currency, base_url=f"https://{store}.example/")
    with ServeProcess(env={"WEFT_STORES_DIR": str(root)}) as process:
        yield process


def product_of(shop: ServeProcess, store: str, index: int = 0) -> str:
    products = structured(call_tool(shop, "search_products", {"store": store}))["products"]
    return str(products[index]["id"])


def items(shop: ServeProcess, cart_id: str) -> dict[str, int]:
    cart = structured(call_tool(shop, "view_cart", {"cart_id": cart_id}))
    return {item["id"]: item["quantity"] for item in cart["items"]}


def test_a_failed_refresh_of_a_shown_cart_leaves_no_endless_loading(host: Host, shop: ServeProcess) -> None:
    """A host that strips structuredContent (Claude Desktop) makes the cart view call view_cart again; when that
    call is refused while a cart is shown, the view showed "Loading…" (aria-busy=true) for ever."""
    cart = structured(call_tool(shop, "add_to_cart", {"product_id": product_of(shop, "euro")}))
    frame = host.load("cart", locale="en-US", toolResult={"structuredContent": cart})
    frame.wait_for_selector("#lines .line")
    host.page.evaluate("(args) => window.pushInput(args)", {"cart_id": "wc_forged-or-expired"})
    host.push_result({"content": [{"type": "text", "text": "Cart: 1 item(s)"}]})
    frame.wait_for_function("() => document.getElementById('status').dataset.kind === 'error'", timeout=5000)
    assert host.calls[-1] == {"name": "view_cart", "arguments": {"cart_id": "wc_forged-or-expired"}}
    assert frame.locator("#state[data-state='loading']").count() == 0
    assert frame.locator("#app").get_attribute("aria-busy") == "false"
    assert frame.locator("#lines .line").count() == 1  # the cart it had is still shown, with the error beside


def test_lines_of_a_multi_currency_cart_show_their_currency(host: Host, shop: ServeProcess) -> None:
    cart = structured(call_tool(shop, "add_to_cart", {"product_id": product_of(shop, "euro")}))
    cart = structured(
        call_tool(shop, "add_to_cart", {"product_id": product_of(shop, "pound"), "cart_id": cart["cart_id"]})
    )
    assert cart["total"] is None
    frame = host.load("cart", locale="en-GB", toolResult={"structuredContent": cart})
    frame.wait_for_selector("#lines .line")
    lines = frame.eval_on_selector_all(".line .line-total", "nodes => nodes.map(n => n.textContent)")
    assert sorted(lines) == ["£4.20", "€4.20"], lines
    totals = frame.eval_on_selector_all("#totals .price", "nodes => nodes.map(n => n.textContent)")
    assert sorted(totals) == ["£4.20", "€4.20"], totals


def test_playground_new_cart_is_the_cart_the_next_add_reaches(shop: ServeProcess, context: Any) -> None:
    """After "New cart" the grid still held the old cart_id, so the next add went into the old cart (and the page
    kept that old cart again)."""
    page = context.new_page()
    page.goto(shop.url + "/?locale=en-US")
    grid = page.frame_locator("#grid-frame")
    cart = page.frame_locator("#cart-frame")
    adds = grid.locator('[data-action="add"]:not([disabled])')
    adds.first.wait_for(timeout=15_000)
    first_product = adds.nth(0).get_attribute("data-product-id")
    adds.nth(0).click()
    cart.locator(f'[data-action="remove"][data-product-id="{first_product}"]').wait_for(timeout=10_000)
    old = page.evaluate("localStorage.getItem('weft.playground.cart_id')")
    assert old and items(shop, old) == {first_product: 1}

    page.click("#new-cart")
    cart.locator("#state[data-state='empty']").wait_for(timeout=10_000)
    adds.first.wait_for(timeout=10_000)
    second_product = adds.nth(1).get_attribute("data-product-id")
    adds.nth(1).click()
    cart.locator(f'[data-action="remove"][data-product-id="{second_product}"]').wait_for(timeout=10_000)
    new = page.evaluate("localStorage.getItem('weft.playground.cart_id')")
    assert items(shop, old) == {first_product: 1}  # the old cart got nothing
    assert new and new != old and items(shop, new) == {second_product: 1}
    assert cart.locator(".line").count() == 1


def test_async_tests_after_a_browser_test_still_run() -> None:
    """The browser fixture's sync playwright runs an event loop in the main thread while it is open; with the
    fixture session-scoped, every async test after the first browser test failed ("Runner.run() cannot be called
    from a running event loop"), so one pytest run of the whole suite (.ci/run) could not pass."""
    import os
    import subprocess
    import sys

    tests = [
        "tests/test_playground_e2e.py::test_without_views_the_page_says_so",
        "tests/test_widgets.py::test_playground_off_is_404",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
