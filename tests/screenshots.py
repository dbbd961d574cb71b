"""Regenerate docs/screenshots/: both views in Hebrew, light and dark, in real headless Chromium.

    .venv/bin/python -m tests.screenshots [--out docs/screenshots]

A ``weft-mcp serve`` on the shared scraped catalog (../shared/data, when present; else the bundled demo store)
answers a real search and fills a real cart; the views get the results through the test host page
(tests/browser.py), as a chat host would give them. Product images are not fetched here (no network), so
the pictures show the views' placeholders. Not run in CI: the PNGs are committed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.processes import ServeProcess
from tests.browser import CHROMIUM, Host, browser_missing_reason, call_tool, structured
from tests.conftest import SHARED_CATALOG

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
WIDTH = 720


def stores_dir(root: Path) -> Path | None:
    """A stores folder holding the shared catalog (a symlink: the data is never copied), or None."""
    if not SHARED_CATALOG.is_file():
        return None
    data = root / "nitzat" / "data"
    data.mkdir(parents=True)
    (data / "products.json").symlink_to(SHARED_CATALOG.resolve())
    (root / "nitzat" / "store.json").write_text(json.dumps({"name": "ניצת הדובדבן", "currency": "ILS"}))
    return root


def fit(host: Host, frame: Any) -> None:
    """Size the iframe to the view's own height, as a host does from size-changed."""
    frame.wait_for_selector("#app[aria-busy='false']")
    height = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
    host.page.evaluate("(h) => { document.querySelector('iframe').style.height = h + 'px'; }", height)
    host.page.wait_for_timeout(150)


def shoot(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = stores_dir(Path(tmp))
        env = {"WEFT_STORES_DIR": str(stores)} if stores else {}
        query = "שקדים" if stores else "אורגני"
        with ServeProcess(env=env) as shop, sync_playwright() as playwright:
            found = structured(call_tool(shop, "search_products", {"search": query, "page_size": 50}))
            buy = [p for p in found["products"] if p["is_purchasable"]][:3]
            cart = structured(call_tool(shop, "add_to_cart", {"product_id": buy[0]["id"], "quantity": 2}))
            for product in buy[1:]:
                args = {"product_id": product["id"], "cart_id": cart["cart_id"]}
                cart = structured(call_tool(shop, "add_to_cart", args))
            grid = call_tool(shop, "search_products", {"search": query, "page_size": 6, "cart_id": cart["cart_id"]})
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                for theme in ("light", "dark"):
                    context = browser.new_context(viewport={"width": WIDTH, "height": 1200}, color_scheme=theme)
                    host = Host(context.new_page(), shop)
                    for view, result in (("product-grid", grid), ("cart", {"structuredContent": cart})):
                        frame = host.load(view, theme=theme, locale="he-IL", toolResult=result)
                        fit(host, frame)
                        path = out / f"{view}-he-{theme}.png"
                        host.page.locator("iframe").screenshot(path=str(path))
                        written.append(path)
                    context.close()
            finally:
                browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    reason = browser_missing_reason()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in shoot(args.out):
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
