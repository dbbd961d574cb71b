"""What an adversarial review of the widgets (issue 12) found, one test per defect, fast layer (no browser).

The browser-side findings are in tests/test_widgets_review_browser.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.widget_views import web_origin
from tests.test_widgets import client_for, rpc, write_store
from tests.widget_placeholders import write_placeholder_views


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # create_app configures logging: put it back after


@pytest.fixture
def views_dir(tmp_path: Path) -> Path:
    return write_placeholder_views(tmp_path / "widgets")


async def call(client: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await rpc(client, "tools/call", {"name": name, "arguments": arguments})
    assert result.get("isError") is not True, result
    data: dict[str, Any] = result["structuredContent"]
    return data


async def test_the_shared_fallback_cart_stays_shared_when_named_by_its_cart_id(views_dir: Path) -> None:
    """The cart view passes the cart_id it was shown on every click; the answer must still say the cart is the
    shared one, or the view's "shared fallback cart" note vanishes after the first −/+ while everyone still
    shares that cart."""
    async with client_for(Settings(_env_file=None, session_fallback="default"), views_dir) as client:
        product = (await call(client, "search_products", {"search": ""}))["products"][0]["id"]
        first = await call(client, "add_to_cart", {"product_id": product})
        assert first["session"]["shared"] is True
        again = await call(client, "view_cart", {"cart_id": first["cart_id"]})
        changed = await call(
            client, "update_cart_item", {"product_id": product, "quantity": 2, "cart_id": first["cart_id"]}
        )
        unnamed = await call(client, "view_cart", {})
    assert unnamed["items"] == changed["items"]  # it is the one shared cart
    assert again["session"]["shared"] is True
    assert changed["session"]["shared"] is True


async def test_a_minted_cart_is_not_called_shared(views_dir: Path) -> None:
    async with client_for(Settings(_env_file=None), views_dir) as client:
        product = (await call(client, "search_products", {"search": ""}))["products"][0]["id"]
        first = await call(client, "add_to_cart", {"product_id": product})
        again = await call(client, "view_cart", {"cart_id": first["cart_id"]})
    assert first["session"]["shared"] is False and again["session"]["shared"] is False


@pytest.mark.parametrize(
    ("link", "origin"),
    [
        ("https://bücher.example/c.png", "https://xn--bcher-kva.example"),
        ("https://BÜCHER.example:8443/c.png", "https://xn--bcher-kva.example:8443"),
        ("https://חנות.example/c.png", "https://xn--9dbd1a4b.example"),
    ],
)
def test_csp_origins_of_international_hosts_are_punycode(link: str, origin: str) -> None:
    """A CSP source must be ASCII (Chromium: "non-whitespace characters outside ASCII 0x21-0x7E must be
    Punycode-encoded"); a Unicode host is an invalid source, so the catalog's images from it stay blocked."""
    assert web_origin(link) == origin


async def test_cart_lines_say_their_currency(tmp_path: Path, views_dir: Path) -> None:
    """In a cart with two currencies the total is null and each line's price has no currency to format with:
    the cart view showed "4,20" next to "14,90" with no symbol. Each line says its store's currency, as each
    searched product does."""
    stores = tmp_path / "stores"
    write_store(stores, "euro-shop", ["https://img.example/a.png"])
    write_store(stores, "pound-shop", ["https://img.example/b.png"])
    meta = json.loads((stores / "pound-shop" / "store.json").read_text())
    (stores / "pound-shop" / "store.json").write_text(json.dumps(meta | {"currency": "GBP"}))
    async with client_for(Settings(_env_file=None, stores_dir=stores), views_dir) as client:
        products = (await call(client, "search_products", {"search": "thing"}))["products"]
        euro = next(p["id"] for p in products if p["currency"] == "EUR")
        pound = next(p["id"] for p in products if p["currency"] == "GBP")
        cart = await call(client, "add_to_cart", {"product_id": euro})
        cart = await call(client, "add_to_cart", {"product_id": pound, "cart_id": cart["cart_id"]})
        tools = {tool["name"]: tool for tool in (await rpc(client, "tools/list"))["tools"]}
    assert cart["total"] is None and set(cart["totals"]) == {"EUR", "GBP"}
    assert {item["id"]: item["currency"] for item in cart["items"]} == {euro: "EUR", pound: "GBP"}
    item = tools["view_cart"]["outputSchema"]["properties"]["items"]["items"]
    assert item["properties"]["currency"] == {"type": "string"} and "currency" in item["required"]
