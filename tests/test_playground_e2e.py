"""The playground (GET /) end to end: a real ``weft-mcp serve`` and Debian's headless Chromium through playwright.

The test drives the views only through issue 12's contract (``data-action`` buttons, text), so it runs against
the real views in service/widgets once they are there, and against tests/widget_placeholders.py before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ServeProcess, serve_command
from tests.widget_placeholders import REAL_VIEWS, write_placeholder_views

pytestmark = pytest.mark.e2e

TOKEN = "playground-token-0123456789"


@dataclass(kw_only=True)
class ServeWithViews(ServeProcess):
    """``weft-mcp serve`` whose widget views come from ``widgets_dir`` (one worker: the app is built in this
    process, so setting the module's folder before the start is enough). ``None``: the package's views."""

    widgets_dir: Path | None = None

    def command(self) -> list[str]:
        command = serve_command(self.port)
        if self.widgets_dir is None:
            return command
        boot = (
            "import pathlib, sys, service.widget_views as views; "
            f"views.WIDGETS_DIR = pathlib.Path({str(self.widgets_dir)!r}); "
            "from service.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        return [sys.executable, "-c", boot, *command[3:]]  # command[:3] is python -m service.cli


@pytest.fixture(scope="module")
def widgets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The real views when service/widgets has them, else the placeholders."""
    return None if REAL_VIEWS else write_placeholder_views(tmp_path_factory.mktemp("widgets"))


@pytest.fixture(scope="module")
def server(widgets_dir: Path | None) -> Iterator[ServeWithViews]:
    with ServeWithViews(widgets_dir=widgets_dir) as process:
        yield process


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh context in the module's Chromium (tests.browser: two sync playwrights cannot be open at once)."""
    context = chromium.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.problems = problems
    try:
        yield page
    finally:
        context.close()


def cart_lines(page: Any) -> Any:
    return page.frame_locator("#cart-frame").locator('[data-action="remove"]')


def test_shop_in_the_playground_and_keep_the_cart_across_a_reload(server: ServeWithViews, page: Any) -> None:
    page.goto(server.url + "/")
    assert page.locator("html").get_attribute("data-auth") == "off"
    grid = page.frame_locator("#grid-frame")
    add_buttons = grid.locator('[data-action="add"]:not([disabled])')
    add_buttons.first.wait_for(timeout=15_000)  # the views were read over /mcp and the first search rendered
    assert page.locator("html").get_attribute("data-views") == "loaded"
    assert cart_lines(page).count() == 0

    page.fill("#search", "")
    page.click('#search-form button[type="submit"]')
    first = add_buttons.first
    product_id = first.get_attribute("data-product-id")
    first.click()
    line = page.frame_locator("#cart-frame").locator(f'[data-action="remove"][data-product-id="{product_id}"]')
    line.wait_for(timeout=10_000)  # the add's answer went from the grid's call to the cart view too
    kept = page.evaluate("localStorage.getItem('weft.playground.cart_id')")
    assert kept and kept.startswith("wc_")
    page.locator("#log li").first.wait_for(timeout=5_000)  # the grid's model-context update, shown in the log

    page.reload()
    line.wait_for(timeout=15_000)  # the same cart, by the kept cart_id
    assert page.evaluate("localStorage.getItem('weft.playground.cart_id')") == kept
    height = page.eval_on_selector("#cart-frame", "frame => frame.getBoundingClientRect().height")
    assert height > 0
    assert page.problems == []  # no CSP refusal, no script error: the hashes cover the views' scripts


def test_the_views_get_the_pages_theme_and_locale(server: ServeWithViews, page: Any) -> None:
    page.goto(server.url + "/?theme=dark&locale=he")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("data-theme") == "dark"
    for frame in ("#grid-frame", "#cart-frame"):
        view = page.frame_locator(frame).locator("html")
        page.frame_locator(frame).locator('html[dir="rtl"]').wait_for(state="attached", timeout=15_000)  # the contract
        if not REAL_VIEWS:  # the stand-ins also show the theme and locale they were given
            assert view.get_attribute("data-theme") == "dark" and view.get_attribute("lang") == "he"


@pytest.mark.skipif(not REAL_VIEWS, reason="needs the real views in service/widgets (issue 12, VIEWS)")
def test_the_real_views_render_prices_under_the_pages_csp(server: ServeWithViews, page: Any) -> None:
    page.goto(server.url + "/?locale=en-US")
    grid = page.frame_locator("#grid-frame")
    grid.locator('[data-action="add"]').first.wait_for(timeout=15_000)
    assert "undefined" not in grid.locator("body").inner_text()
    assert page.problems == []


def test_with_auth_required_the_page_asks_for_a_token(page: Any, widgets_dir: Path | None, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} alice\n", encoding="utf-8")
    with ServeWithViews(widgets_dir=widgets_dir, env={"WEFT_AUTH_TOKENS_FILE": str(tokens)}) as server:
        page.goto(server.url + "/")
        assert page.locator("html").get_attribute("data-auth") == "required"
        page.locator("#token-form").wait_for(state="visible", timeout=10_000)
        add = page.frame_locator("#grid-frame").locator('[data-action="add"]')
        assert add.count() == 0  # nothing was read without a token
        page.fill("#token", "wrong-token")
        page.click('#token-form button[type="submit"]')
        page.locator("#token-note", has_text="refused").wait_for(timeout=10_000)
        page.fill("#token", TOKEN)
        page.click('#token-form button[type="submit"]')
        add.first.wait_for(timeout=15_000)
        assert page.locator("#token-form").is_hidden()
        assert page.problems == []


def test_without_views_the_page_says_so(page: Any, tmp_path: Path) -> None:
    empty = tmp_path / "widgets"
    empty.mkdir()
    with ServeWithViews(widgets_dir=empty) as server:
        page.goto(server.url + "/")
        page.locator('html[data-views="absent"]').wait_for(state="attached", timeout=10_000)
        assert "no widget views" in page.locator("#status").inner_text()
        assert page.locator("#store option").count() >= 2  # the page still works: stores were listed
        assert "No widget views" in server.log_text()
