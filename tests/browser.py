"""Real headless Chromium for the widget tests: the browser, the served views, and a test MCP Apps host page.

Chromium is Debian's (``/usr/bin/chromium``, driven by playwright with ``executable_path``: playwright cannot
download its own browser here). Without it or without playwright the tests skip with the reason, unless
``WEFT_TEST_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.

The host page (``HOST_PAGE``) is the host side of the MCP Apps bridge in about 60 lines: it loads a view into
``<iframe sandbox="allow-scripts" srcdoc=...>``, answers ``ui/initialize`` with a ``hostContext`` (theme, locale,
``styles.variables``), pushes tool-input and tool-result after ``ui/notifications/initialized``, forwards the
view's ``tools/call`` to a real ``weft-mcp serve`` over HTTP (``forward_tool``: name and arguments only, no
``_meta``), answers the other requests, and logs every message the view sends in ``window.hostLog``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.processes import ServeProcess
from tests.jsonrpc import JSON_HEADERS, tool_call_message

CHROMIUM = os.environ.get("WEFT_TEST_CHROMIUM", "/usr/bin/chromium")
WIDGETS = Path(__file__).resolve().parents[1] / "service" / "widgets"
STYLE_TAG = '<link rel="stylesheet" href="widget.css">'
SCRIPT_TAG = '<script src="bridge.js"></script>'
VIEW_FILES = {"product-grid": "product-grid.html", "cart": "cart.html"}

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>test host</title>
<style>body{margin:0} iframe{border:0;width:100%;height:900px;display:block}</style></head>
<body><div id="slot"></div>
<script>
window.hostLog = [];
window.hostConfig = null;
let frame = null;
function send(message) { frame.contentWindow.postMessage(message, "*"); }
function reply(id, result) { send({jsonrpc: "2.0", id: id, result: result}); }
window.loadView = function (html, config) {
  window.hostConfig = config;
  window.hostLog = [];
  frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("title", "view");
  frame.srcdoc = html;
  document.getElementById("slot").replaceChildren(frame);
};
window.pushResult = function (result) {
  send({jsonrpc: "2.0", method: "ui/notifications/tool-result", params: result});
};
window.pushInput = function (args) {
  send({jsonrpc: "2.0", method: "ui/notifications/tool-input", params: {arguments: args}});
};
window.pushContext = function (context) {
  send({jsonrpc: "2.0", method: "ui/notifications/host-context-changed", params: context});
};
window.messagesFor = function (method) {
  return window.hostLog.filter(function (m) { return m.method === method; });
};
window.addEventListener("message", async function (event) {
  if (!frame || event.source !== frame.contentWindow) return;
  const message = event.data;
  window.hostLog.push(message);
  const config = window.hostConfig || {};
  switch (message.method) {
    case "ui/initialize":
      if (config.silent) return;
      reply(message.id, {
        protocolVersion: "2026-01-26",
        hostInfo: {name: "weft-test-host", version: "1"},
        hostCapabilities: {openLinks: {}, serverTools: {}, updateModelContext: {text: {}}},
        hostContext: {theme: config.theme || "light", locale: config.locale || "en-US",
                      styles: {variables: config.variables || {}}, displayMode: "inline"},
      });
      return;
    case "ui/notifications/initialized":
      if (config.toolInput) window.pushInput(config.toolInput);
      if (config.toolResult) window.pushResult(config.toolResult);
      return;
    case "tools/call": {
      const result = await window.forward_tool(message.params.name, message.params.arguments || {});
      reply(message.id, result);
      return;
    }
    default:
      if (message.id !== undefined && message.method) reply(message.id, {});
  }
});
</script></body></html>
"""


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which("chromium"):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def require_browser() -> None:
    reason = browser_missing_reason()
    if reason is None:
        return
    if os.environ.get("WEFT_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WEFT_TEST_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (each test takes a fresh context: no shared storage).

    Module, not session: while sync playwright is open its event loop runs in the main thread, and every async
    test after it would fail ("Runner.run() cannot be called from a running event loop"). Browser modules start
    one after another, so two playwrights never overlap."""
    require_browser()
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


# ---------------------------------------------------------------- the views as a host gets them


def inline_view(name: str, directory: Path = WIDGETS) -> str:
    """The view file with widget.css and bridge.js inlined, the way the server's loader serves it."""
    html = (directory / VIEW_FILES[name]).read_text(encoding="utf-8")
    css = (directory / "widget.css").read_text(encoding="utf-8")
    script = (directory / "bridge.js").read_text(encoding="utf-8")
    assert html.count(STYLE_TAG) == 1 and html.count(SCRIPT_TAG) == 1, f"{name}: the two shared-part tags"
    return html.replace(STYLE_TAG, f"<style>\n{css}\n</style>").replace(SCRIPT_TAG, f"<script>\n{script}\n</script>")


def served_view(name: str, server: ServeProcess | None = None) -> str:
    """What a host gets for view ``name``: ``resources/read`` of its ``ui://weft/<name>-<hash>.html`` from
    ``server`` when the server lists one (service.widget_views), else the files inlined here."""
    if server is not None:
        listed = mcp_request(server, "resources/list").get("resources", [])
        pattern = re.compile(rf"^ui://weft/{re.escape(name)}-[0-9a-f]{{12}}\.html$")
        uris = [r["uri"] for r in listed if pattern.match(r.get("uri", ""))]
        if uris:
            contents = mcp_request(server, "resources/read", {"uri": uris[0]})["contents"]
            return str(contents[0]["text"])
    return inline_view(name)


# ---------------------------------------------------------------- talking to the real server


def mcp_request(server: ServeProcess, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params or {})}
    response = httpx.post(server.mcp_url, json=message, headers=JSON_HEADERS, timeout=10.0)
    response.raise_for_status()
    body = response.json()
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


def call_tool(server: ServeProcess, name: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One ``tools/call`` with no ``_meta`` (as a host forwarding a view's call); the CallToolResult."""
    response = httpx.post(server.mcp_url, json=tool_call_message(name, arguments), headers=JSON_HEADERS, timeout=10.0)
    response.raise_for_status()
    result: dict[str, Any] = response.json()["result"]
    return result


def structured(result: Mapping[str, Any]) -> dict[str, Any]:
    assert result.get("isError") is not True, result
    data: dict[str, Any] = result["structuredContent"]
    return data


class Host:
    """A page holding the test host and one view; ``calls`` lists the view's tools/call as forwarded."""

    def __init__(self, page: Any, server: ServeProcess) -> None:
        self.page = page
        self.server = server
        self.calls: list[dict[str, Any]] = []
        page.expose_function("forward_tool", self._forward)
        page.set_content(HOST_PAGE)

    def _forward(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({"name": name, "arguments": arguments})
        return call_tool(self.server, name, arguments)

    def load(self, view: str, **config: Any) -> Any:
        """Load ``view`` with a host config (theme, locale, variables, toolInput, toolResult, silent); its frame."""
        self.page.evaluate(
            "([html, config]) => window.loadView(html, config)", [served_view(view, self.server), config]
        )
        handle = self.page.wait_for_selector("iframe")
        frame = handle.content_frame()
        frame.wait_for_selector("#app")
        return frame

    def log(self, method: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.page.evaluate("(m) => window.messagesFor(m)", method)
        return messages

    def push_result(self, result: Mapping[str, Any]) -> None:
        self.page.evaluate("(r) => window.pushResult(r)", dict(result))

    def push_context(self, context: Mapping[str, Any]) -> None:
        self.page.evaluate("(c) => window.pushContext(c)", dict(context))


def write_store(root: Path, store_id: str, products: list[dict[str, Any]], **meta: Any) -> Path:
    """A stores folder (``WEFT_STORES_DIR``) with one store: ``store.json`` from ``meta`` and its products."""
    data = root / store_id / "data"
    data.mkdir(parents=True)
    (data / "products.json").write_text(json.dumps({"products": products}), encoding="utf-8")
    if meta:
        (root / store_id / "store.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser context per test (no shared storage), in the module's Chromium."""
    ctx = chromium.new_context(viewport={"width": 760, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def host(context: Any, shop: ServeProcess) -> Host:
    """The test host page in a fresh context, forwarding to the test module's ``shop`` server."""
    return Host(context.new_page(), shop)
