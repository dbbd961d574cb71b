"""The two widget views (product grid, cart) as MCP Apps resources, and the ``_meta`` that points tools at them.

A view file references the shared parts with exactly ``<link rel="stylesheet" href="widget.css">`` and
``<script src="bridge.js"></script>``; loading inlines both, so the served resource fetches nothing but images.
Each view's URI carries a hash of what is served (``ui://weft/cart-<12 hex>.html``), so a host that caches
``tools/list`` or a resource never shows an old view. The CSP lists the catalog's image origins exactly (hosts
such as ChatGPT refuse wildcards), under both the MCP Apps and the ``openai/*`` keys.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server.apps import APP_MIME_TYPE
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import TextResource

from service.catalog import Catalog

logger = logging.getLogger(__name__)

WIDGETS_DIR = Path(__file__).resolve().parent / "widgets"
STYLE_TAG = '<link rel="stylesheet" href="widget.css">'
SCRIPT_TAG = '<script src="bridge.js"></script>'
STYLE_FILE = "widget.css"
SCRIPT_FILE = "bridge.js"
URI_PREFIX = "ui://weft/"
HASH_LENGTH = 12


@dataclass(frozen=True)
class ViewSpec:
    """One view: its file, its URI's stem, and what hosts show about it."""

    name: str
    file: str
    title: str
    description: str  # openai/widgetDescription: what the model is told the widget shows


GRID = ViewSpec(
    "product-grid",
    "product-grid.html",
    "Product grid",
    "Shows the products found, with prices and add-to-cart buttons.",
)
CART = ViewSpec(
    "cart",
    "cart.html",
    "Cart",
    "Shows the cart: lines, quantities, totals, share and checkout.",
)
SPECS = (GRID, CART)

# Which tool shows which view, and ChatGPT's status lines while it runs (at most 64 characters each).
TOOL_VIEWS: dict[str, tuple[ViewSpec, str, str]] = {
    "search_products": (GRID, "Searching products…", "Products found"),
    "add_to_cart": (CART, "Adding to cart…", "Added to cart"),
    "update_cart_item": (CART, "Updating cart…", "Cart updated"),
    "remove_from_cart": (CART, "Removing from cart…", "Removed from cart"),
    "view_cart": (CART, "Opening cart…", "Cart shown"),
    "clear_cart": (CART, "Clearing cart…", "Cart cleared"),
    "share_cart": (CART, "Making a share code…", "Share code ready"),
    "claim_cart": (CART, "Claiming cart…", "Cart claimed"),
    "checkout_link": (CART, "Preparing checkout…", "Checkout ready"),
}


class WidgetViewError(ValueError):
    """The view files are there but cannot be served as they are (a shared part or a tag is missing)."""


@dataclass(frozen=True)
class View:
    spec: ViewSpec
    uri: str
    html: str  # what resources/read serves: self-contained
    meta: dict[str, Any]  # the resource's _meta


@dataclass(frozen=True)
class WidgetViews:
    """Both views, loaded and versioned; ``image_origins`` is what their CSP allows images from."""

    views: dict[str, View]  # by ViewSpec.name
    image_origins: list[str]

    def for_tool(self, tool: str) -> dict[str, Any] | None:
        """The tool's ``_meta`` in ``tools/list`` (both kinds of keys), or None for a tool with no view."""
        if tool not in TOOL_VIEWS:
            return None
        spec, invoking, invoked = TOOL_VIEWS[tool]
        uri = self.views[spec.name].uri
        return {
            "ui": {"resourceUri": uri},
            "openai/outputTemplate": uri,
            "openai/widgetAccessible": True,
            "openai/toolInvocation/invoking": invoking,
            "openai/toolInvocation/invoked": invoked,
        }

    def register(self, server: MCPServer) -> None:
        """Both views as resources: ``resources/list`` and ``resources/read`` give them with their ``_meta``."""
        for view in self.views.values():
            server.add_resource(
                TextResource(
                    uri=view.uri,
                    name=view.spec.name,
                    title=view.spec.title,
                    description=view.spec.description,
                    mime_type=APP_MIME_TYPE,
                    meta=view.meta,
                    text=view.html,
                )
            )


def load_widget_views(directory: Path, catalog: Catalog, domain: str | None = None) -> WidgetViews | None:
    """The views in ``directory``, or None (with a WARNING) when neither view file is there yet.

    Once a view file is there, anything missing (the other view, ``widget.css``, ``bridge.js``, either tag)
    is a ``WidgetViewError``: a half-installed UI must stop the start, not serve a broken view.
    """
    pages = served_pages(directory)
    if pages is None:
        logger.warning(
            "No widget views in %s (%s): tools are served without a UI",
            directory,
            ", ".join(spec.file for spec in SPECS),
        )
        return None
    origins = image_origins(catalog)
    views = {}
    for spec in SPECS:
        uri = versioned_uri(spec.name, pages[spec.name])
        views[spec.name] = View(spec, uri, pages[spec.name], resource_meta(spec, origins, domain))
    return WidgetViews(views, origins)


def served_pages(directory: Path) -> dict[str, str] | None:
    """Each view's page as served (shared parts inlined), by name; None when no view file is there.

    ``weft-mcp serve`` calls this before starting workers, so a broken view stops the start with one line.
    """
    present = [spec for spec in SPECS if (directory / spec.file).is_file()]
    if not present:
        return None
    missing = [spec.file for spec in SPECS if spec not in present]
    missing += [name for name in (STYLE_FILE, SCRIPT_FILE) if not (directory / name).is_file()]
    if missing:
        raise WidgetViewError(f"widget views in {str(directory)!r} are incomplete: {', '.join(missing)} missing")
    css = read_text(directory / STYLE_FILE)
    script = read_text(directory / SCRIPT_FILE)
    if "</style" in css.lower():
        raise WidgetViewError(f"{STYLE_FILE} contains '</style', which would end the inlined style early")
    if "</script" in script.lower():
        raise WidgetViewError(f"{SCRIPT_FILE} contains '</script', which would end the inlined script early")
    return {spec.name: inline_parts(read_text(directory / spec.file), spec.file, css, script) for spec in SPECS}


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WidgetViewError(f"cannot read {str(path)!r}: {exc}") from exc


def inline_parts(html: str, file: str, css: str, script: str) -> str:
    """``html`` with the two tags replaced by the shared style and script inline; each tag exactly once."""
    for tag in (STYLE_TAG, SCRIPT_TAG):
        count = html.count(tag)
        if count != 1:
            raise WidgetViewError(f"{file} must contain {tag} exactly once (found {count})")
    html = html.replace(STYLE_TAG, f"<style>\n{css}\n</style>")
    return html.replace(SCRIPT_TAG, f"<script>\n{script}\n</script>")


def versioned_uri(name: str, html: str) -> str:
    digest = hashlib.sha256(html.encode("utf-8")).hexdigest()[:HASH_LENGTH]
    return f"{URI_PREFIX}{name}-{digest}.html"


def image_origins(catalog: Catalog) -> list[str]:
    """Sorted distinct ``scheme://host[:port]`` of every http(s) product image (the catalog made them absolute)."""
    origins = set()
    for store in catalog.stores.values():
        for product in store.products:
            origin = web_origin(product.image)
            if origin is not None:
                origins.add(origin)
    return sorted(origins)


def web_origin(link: str | None) -> str | None:
    """The origin of an absolute http(s) URL, lower-cased, punycode, default ports dropped; None for anything else."""
    if not link:
        return None
    try:
        parts = urlsplit(link)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or "*" in host:
        return None
    try:  # a CSP source is ASCII: an international host goes in as punycode, or hosts drop it as invalid
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def resource_meta(spec: ViewSpec, origins: list[str], domain: str | None) -> dict[str, Any]:
    """A view's resource ``_meta``: MCP Apps' ``ui`` and ChatGPT's ``openai/*`` saying the same."""
    ui: dict[str, Any] = {
        "csp": {"resourceDomains": list(origins), "connectDomains": []},
        "prefersBorder": True,
    }
    meta: dict[str, Any] = {
        "ui": ui,
        "openai/widgetCSP": {"resource_domains": list(origins), "connect_domains": []},
        "openai/widgetPrefersBorder": True,
        "openai/widgetDescription": spec.description,
    }
    if domain:
        ui["domain"] = domain
        meta["openai/widgetDomain"] = domain
    return meta
