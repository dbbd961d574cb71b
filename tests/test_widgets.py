"""Widget declarations (issue 12, server side): tool and resource ``_meta``, versioned URIs, the CSP's image
origins from the loaded catalog, ``WEFT_WIDGET_DOMAIN``, the view loader's refusals, and the playground route.

Views come from tests/widget_placeholders.py in temporary folders; the real ones (service/widgets) are VIEWS'."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.apps import APP_MIME_TYPE

from service.app import create_app
from service.catalog import load_catalog
from service.config import Settings
from service.playground import script_hashes
from service.widget_views import (
    SCRIPT_TAG,
    STYLE_TAG,
    WidgetViewError,
    load_widget_views,
    web_origin,
)
from tests.jsonrpc import JSON_HEADERS, tool_call_message
from tests.widget_placeholders import BRIDGE, CART, CSS, GRID, write_placeholder_views

CART_TOOLS = [
    "add_to_cart",
    "update_cart_item",
    "remove_from_cart",
    "view_cart",
    "clear_cart",
    "share_cart",
    "claim_cart",
    "checkout_link",
]
DEMO_ORIGINS = ["https://demo-market.example.com"]


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # create_app configures logging: put it back after


@pytest.fixture
def views_dir(tmp_path: Path) -> Path:
    return write_placeholder_views(tmp_path / "widgets")


@asynccontextmanager
async def client_for(settings: Settings, widgets_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, widgets_dir=widgets_dir)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def rpc(client: httpx.AsyncClient, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params or {})}
    response = await client.post("/mcp", json=message, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def write_store(root: Path, store_id: str, images: list[Any], base_url: str | None = None) -> None:
    folder = root / store_id
    (folder / "data").mkdir(parents=True)
    meta = {"name": store_id, "currency": "EUR"} | ({"base_url": base_url} if base_url else {})
    (folder / "store.json").write_text(json.dumps(meta), encoding="utf-8")
    products = [
        {"name": f"Thing {index}", "price": "1.00", "category": "Stuff", "image": image, "url": None}
        for index, image in enumerate(images)
    ]
    (folder / "data" / "products.json").write_text(json.dumps({"products": products}), encoding="utf-8")


# ---------------------------------------------------------------- tools/list and resources over /mcp


async def test_tools_list_declares_the_views_on_the_nine_tools_only(views_dir: Path) -> None:
    async with client_for(settings(), views_dir) as client:
        tools = {tool["name"]: tool for tool in (await rpc(client, "tools/list"))["tools"]}
        resources = {r["uri"]: r for r in (await rpc(client, "resources/list"))["resources"]}
    grid_uri = tools["search_products"]["_meta"]["ui"]["resourceUri"]
    cart_uri = tools["view_cart"]["_meta"]["ui"]["resourceUri"]
    assert grid_uri.startswith("ui://weft/product-grid-") and cart_uri.startswith("ui://weft/cart-")
    assert set(resources) == {grid_uri, cart_uri}
    for name in ["search_products", *CART_TOOLS]:
        meta = tools[name]["_meta"]
        uri = grid_uri if name == "search_products" else cart_uri
        assert meta["ui"] == {"resourceUri": uri}
        assert meta["openai/outputTemplate"] == uri
        assert meta["openai/widgetAccessible"] is True
        for key in ("openai/toolInvocation/invoking", "openai/toolInvocation/invoked"):
            assert 0 < len(meta[key]) <= 64
    for name in ("list_stores", "debug_session"):
        assert "_meta" not in tools[name] or not tools[name]["_meta"]
    assert set(tools) == {"search_products", "list_stores", "debug_session", *CART_TOOLS}


async def test_resources_read_serves_self_contained_views_with_their_meta(views_dir: Path) -> None:
    async with client_for(settings(), views_dir) as client:
        listed = (await rpc(client, "resources/list"))["resources"]
        read = {r["uri"]: await rpc(client, "resources/read", {"uri": r["uri"]}) for r in listed}
    for resource in listed:
        assert resource["mimeType"] == APP_MIME_TYPE == "text/html;profile=mcp-app"
        (content,) = read[resource["uri"]]["contents"]
        assert content["mimeType"] == APP_MIME_TYPE
        html = content["text"]
        assert STYLE_TAG not in html and SCRIPT_TAG not in html and "src=" not in html
        assert CSS.strip() in html and "window.bridge" in html  # both shared parts, inline
        for meta in (resource["_meta"], content["_meta"]):
            assert meta["ui"] == {"csp": {"resourceDomains": DEMO_ORIGINS, "connectDomains": []}, "prefersBorder": True}
            assert meta["openai/widgetCSP"] == {"resource_domains": DEMO_ORIGINS, "connect_domains": []}
            assert meta["openai/widgetPrefersBorder"] is True
            assert meta["openai/widgetDescription"]
            assert "openai/widgetDomain" not in meta
    grid = next(r for r in listed if "product-grid" in r["uri"])
    assert 'id="products"' in read[grid["uri"]]["contents"][0]["text"]


async def test_widget_domain_setting(views_dir: Path) -> None:
    async with client_for(settings(widget_domain="https://widgets.shop.example"), views_dir) as client:
        listed = (await rpc(client, "resources/list"))["resources"]
    for resource in listed:
        assert resource["_meta"]["ui"]["domain"] == "https://widgets.shop.example"
        assert resource["_meta"]["openai/widgetDomain"] == "https://widgets.shop.example"


@pytest.mark.parametrize("bad", ["two words", "tab\there", "line\nbreak"])
def test_widget_domain_refuses_what_cannot_be_a_domain(bad: str) -> None:
    with pytest.raises(ValueError, match="widget_domain"):
        settings(widget_domain=bad)


def test_blank_widget_domain_is_unset() -> None:
    assert settings(widget_domain="  ").widget_domain is None


async def test_a_search_result_says_each_products_currency(views_dir: Path) -> None:
    async with client_for(settings(), views_dir) as client:
        result = await rpc(client, "tools/call", {"name": "search_products", "arguments": {"search": ""}})
        tools = {tool["name"]: tool for tool in (await rpc(client, "tools/list"))["tools"]}
    products = result["structuredContent"]["products"]
    assert products and all(product["currency"] == "ILS" for product in products)
    item = tools["search_products"]["outputSchema"]["properties"]["products"]["items"]
    assert item["properties"]["currency"] == {"type": "string"} and "currency" in item["required"]


async def test_each_products_currency_is_its_own_stores(tmp_path: Path, views_dir: Path) -> None:
    stores = tmp_path / "stores"
    write_store(stores, "euro-shop", ["https://img.example/a.png"])
    write_store(stores, "pound-shop", ["https://img.example/b.png"])
    meta = json.loads((stores / "pound-shop" / "store.json").read_text())
    (stores / "pound-shop" / "store.json").write_text(json.dumps(meta | {"currency": "GBP"}))
    async with client_for(settings(stores_dir=stores), views_dir) as client:
        result = await rpc(client, "tools/call", {"name": "search_products", "arguments": {"search": "thing"}})
    currencies = {p["id"].split(":")[0]: p["currency"] for p in result["structuredContent"]["products"]}
    assert currencies == {"euro-shop": "EUR", "pound-shop": "GBP"}


# ---------------------------------------------------------------- the loader


def test_the_uri_changes_when_the_served_view_changes(tmp_path: Path) -> None:
    catalog = load_catalog(None)
    first = load_widget_views(write_placeholder_views(tmp_path / "a"), catalog)
    same = load_widget_views(write_placeholder_views(tmp_path / "b"), catalog)
    changed_view = load_widget_views(write_placeholder_views(tmp_path / "c", cart=CART + "<!-- v2 -->"), catalog)
    changed_bridge = write_placeholder_views(tmp_path / "d")
    (changed_bridge / "bridge.js").write_text(BRIDGE + "\n// v2\n")
    changed_shared = load_widget_views(changed_bridge, catalog)
    assert first and same and changed_view and changed_shared
    uri = {name: view.uri for name, view in first.views.items()}
    assert {name: view.uri for name, view in same.views.items()} == uri
    assert (
        changed_view.views["cart"].uri != uri["cart"] and changed_view.views["product-grid"].uri == uri["product-grid"]
    )
    assert all(changed_shared.views[name].uri != uri[name] for name in uri)  # a shared part is in both views
    for view in first.views.values():
        assert view.uri.removeprefix("ui://weft/").removesuffix(".html").rsplit("-", 1)[1].isalnum()
        assert len(view.uri.rsplit("-", 1)[1]) == len("0123456789ab.html")


def test_no_view_files_is_a_warning_and_no_ui(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "widgets"
    empty.mkdir()
    (empty / "playground.html").write_text("<!doctype html>")
    with caplog.at_level(logging.WARNING, logger="service.widget_views"):
        assert load_widget_views(empty, load_catalog(None)) is None
        assert load_widget_views(tmp_path / "no-such-folder", load_catalog(None)) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "without a UI" in warnings[0].getMessage()


async def test_the_server_starts_without_views_and_declares_no_ui(tmp_path: Path) -> None:
    empty = tmp_path / "widgets"
    empty.mkdir()
    async with client_for(settings(), empty) as client:
        tools = (await rpc(client, "tools/list"))["tools"]
        resources = (await rpc(client, "resources/list"))["resources"]
        page = await client.get("/")
    assert resources == []
    assert all(not tool.get("_meta") for tool in tools)
    assert page.status_code == 200  # the page itself then says there is nothing to show


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: (d / "cart.html").unlink(), "cart.html missing"),
        (lambda d: (d / "bridge.js").unlink(), "bridge.js missing"),
        (lambda d: (d / "widget.css").unlink(), "widget.css missing"),
        (lambda d: (d / "product-grid.html").write_text(GRID.replace(STYLE_TAG, "")), "product-grid.html must contain"),
        (lambda d: (d / "cart.html").write_text(CART.replace(SCRIPT_TAG, "")), "cart.html must contain"),
        (lambda d: (d / "cart.html").write_text(CART + SCRIPT_TAG), "exactly once (found 2)"),
        (
            lambda d: (d / "product-grid.html").write_text(
                GRID.replace(SCRIPT_TAG, '<script src="bridge.js" ></script>')
            ),
            "product-grid.html must contain",
        ),
        (lambda d: (d / "bridge.js").write_text("x = '</script>';"), "</script"),
        (lambda d: (d / "widget.css").write_text("</STYLE>"), "</style"),
        (lambda d: (d / "cart.html").write_bytes(b"\xff\xfe bad"), "cannot read"),
    ],
)
def test_incomplete_views_stop_the_start(tmp_path: Path, change: Any, words: str) -> None:
    folder = write_placeholder_views(tmp_path / "widgets")
    change(folder)
    with pytest.raises(WidgetViewError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_widget_views(folder, load_catalog(None))
    with pytest.raises(WidgetViewError):
        create_app(settings(), widgets_dir=folder)


# ---------------------------------------------------------------- image origins from the catalog


def test_csp_origins_come_from_the_loaded_catalog(tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    write_store(
        stores,
        "alpha",
        [
            "https://cdn.alpha.example/img/1.png",
            "https://cdn.alpha.example/img/2.png",  # duplicate origin
            "HTTPS://CDN.Alpha.Example:443/img/3.png",  # same origin, other spelling
            "/images/relative.png",  # resolved with base_url
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "ftp://files.alpha.example/x.png",
            "http://plain.example:8080/x.png",
            None,
            "",
        ],
        base_url="https://www.alpha.example/shop/",
    )
    write_store(stores, "beta", ["//img.beta.example/a.png", "relative-no-base.png", "https://cdn.alpha.example/z"])
    catalog = load_catalog(stores)
    views = load_widget_views(write_placeholder_views(tmp_path / "widgets"), catalog)
    assert views is not None
    expected = [
        "http://plain.example:8080",
        "https://cdn.alpha.example",
        "https://img.beta.example",
        "https://www.alpha.example",
    ]
    assert views.image_origins == expected
    for view in views.views.values():
        assert view.meta["ui"]["csp"]["resourceDomains"] == expected
        assert view.meta["openai/widgetCSP"]["resource_domains"] == expected
        assert not any("*" in origin for origin in expected)


@pytest.mark.parametrize(
    ("link", "origin"),
    [
        ("https://a.example/x", "https://a.example"),
        ("http://a.example:80/x", "http://a.example"),
        ("https://a.example:8443/x", "https://a.example:8443"),
        ("https://[::1]:8000/x", "https://[::1]:8000"),
        ("https://*.example/x", None),
        ("https://a.example:99999/x", None),
        ("javascript:alert(1)", None),
        ("data:image/png;base64,AA", None),
        ("/relative.png", None),
        (None, None),
    ],
)
def test_web_origin(link: str | None, origin: str | None) -> None:
    assert web_origin(link) == origin


# ---------------------------------------------------------------- the playground route


async def test_playground_page_and_its_csp(views_dir: Path) -> None:
    async with client_for(settings(), views_dir) as client:
        page = await client.get("/")
        head = await client.head("/")
        listed = (await rpc(client, "resources/list"))["resources"]
        views = [(await rpc(client, "resources/read", {"uri": r["uri"]}))["contents"][0]["text"] for r in listed]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert head.status_code == 200 and head.content == b""
    assert 'data-auth="off"' in page.text
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "http: https: data:"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"]
    allowed = set(policy["script-src"].split())
    # The page's script and every script of both views (they run in srcdoc frames, under this policy).
    needed = set(script_hashes(page.text)) | {h for html in views for h in script_hashes(html)}
    assert len(needed) >= 3 and needed <= allowed
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_playground_off_is_404(views_dir: Path) -> None:
    async with client_for(settings(playground=False), views_dir) as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.head("/")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200


async def test_with_auth_required_the_page_is_public_and_mcp_is_not(tmp_path: Path, views_dir: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token-for-the-page alice\n")
    async with client_for(settings(auth_tokens_file=tokens), views_dir) as client:
        page = await client.get("/")
        refused = await client.post("/mcp", json=tool_call_message("list_stores"), headers=JSON_HEADERS)
        allowed = await client.post(
            "/mcp",
            json=tool_call_message("list_stores"),
            headers={**JSON_HEADERS, "Authorization": "Bearer s3cret-token-for-the-page"},
        )
    assert page.status_code == 200 and 'data-auth="required"' in page.text
    assert refused.status_code == 401
    assert allowed.status_code == 200 and allowed.json()["result"]["structuredContent"]["stores"]


async def test_optional_auth_is_told_to_the_page(tmp_path: Path, views_dir: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token-for-the-page alice\n")
    async with client_for(settings(auth_tokens_file=tokens, auth_mode="optional"), views_dir) as client:
        page = await client.get("/")
    assert 'data-auth="optional"' in page.text


def test_script_hashes_are_over_the_inline_script_text() -> None:
    import base64
    import hashlib

    expected = "'sha256-" + base64.b64encode(hashlib.sha256(b"let a = 1 < 2;\n").digest()).decode() + "'"
    html = '<p>x</p><script src="x.js"></script><script>let a = 1 < 2;\r\n</script><script type="module"></script>'
    empty = "'sha256-" + base64.b64encode(hashlib.sha256(b"").digest()).decode() + "'"
    assert script_hashes(html) == [expected, empty]


async def test_tools_list_with_the_widgets_stays_within_its_budget(views_dir: Path) -> None:
    from bench.tool_list import measure

    with_views = await measure(views_dir)
    without = await measure(views_dir / "absent")
    assert with_views.widget_meta_bytes > 0 and without.widget_meta_bytes == 0
    assert with_views.total_bytes - without.total_bytes == with_views.widget_meta_bytes + len(',"_meta":') * 9
    assert with_views.tokens <= 6000  # BENCHMARKS.md (h)


def test_serve_stops_with_one_line_on_a_broken_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from service import cli, widget_views

    broken = write_placeholder_views(tmp_path / "widgets")
    (broken / "bridge.js").unlink()
    monkeypatch.setattr(widget_views, "WIDGETS_DIR", broken)
    for name in [name for name in os.environ if name.startswith("WEFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env

    def must_not_serve(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weft-mcp serve went on to serve with a broken view")

    monkeypatch.setattr("service.http_server.serve", must_not_serve)
    monkeypatch.setattr("signal.signal", lambda *args: None)
    assert cli._serve(argparse.Namespace(host=None, port=None, workers=None)) == 2
    err = capsys.readouterr().err.strip()  # the catalog's start-up lines, then the one that says why it stopped
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("weft-mcp: widget views in ") and last.endswith("bridge.js missing"), last
