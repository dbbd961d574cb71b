"""``GET /``: the playground, a small MCP Apps host page where a person shops through the widgets without a chat.

The page is public (it holds no data); it talks to ``POST /mcp`` like any host, so with auth on it asks the
person for a token. Its CSP allows only its own inline scripts and the views' (by hash: a view runs in a
``srcdoc`` iframe, which inherits this policy), images from any http(s) origin (catalog images), and
connections to this server alone.
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from service.config import Settings
from service.widget_views import WidgetViews

PAGE_FILE = "playground.html"
AUTH_PLACEHOLDER = 'data-auth="off"'  # the page's <html> attribute; replaced with the server's WEFT_AUTH_MODE


class _InlineScripts(HTMLParser):
    """The text of every inline ``<script>`` (what a CSP hash is computed over)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._current: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not any(name == "src" for name, _ in attrs):
            self._current = []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._current is not None:
            self.scripts.append("".join(self._current))
            self._current = None


def script_hashes(html: str) -> list[str]:
    """CSP ``'sha256-…'`` sources for the inline scripts of ``html`` (line ends normalized, as a browser does)."""
    parser = _InlineScripts()
    parser.feed(html.replace("\r\n", "\n").replace("\r", "\n"))
    parser.close()
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"
        for script in parser.scripts
    ]


def content_security_policy(page: str, views: WidgetViews | None) -> str:
    hashes = script_hashes(page)
    for view in views.views.values() if views else ():
        hashes += script_hashes(view.html)
    scripts = " ".join(dict.fromkeys(hashes)) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'unsafe-inline'",
            "img-src http: https: data:",
            "connect-src 'self'",
            "frame-src 'self'",  # srcdoc frames only; nothing is framed by URL
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def playground_page(settings: Settings) -> str:
    """The page, told (``data-auth``) whether the server asks for a token, so it can prompt before the first 401."""
    page = (resources.files("service") / "widgets" / PAGE_FILE).read_text(encoding="utf-8")
    if page.count(AUTH_PLACEHOLDER) != 1:
        raise ValueError(f"{PAGE_FILE} must carry {AUTH_PLACEHOLDER} once")
    return page.replace(AUTH_PLACEHOLDER, f'data-auth="{settings.auth_mode}"')


def playground_route(settings: Settings, views: WidgetViews | None) -> Route:
    """``GET /`` (and ``HEAD /``): the page, with its CSP."""
    page = playground_page(settings)
    headers = {
        "Content-Security-Policy": content_security_policy(page, views),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }

    async def playground(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    return Route("/", playground, methods=["GET"])
