"""The lean POST /mcp endpoint answers exactly as the SDK's own stateless path: status, headers and body.

Each case is sent to two apps built alike (embedded store, one secret), one with the lean endpoint
and one with the SDK's, in the same order, so both carts go through the same states. The cases the
lean endpoint hands to the SDK (notifications, initialize, bad bodies, other protocol eras, failed
header checks) are checked to be handed over, the others to be answered without the SDK's path.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from service import app as app_module
from service.config import Settings
from service.mcp_endpoint import LeanStatelessEndpoint, install_lean_endpoint

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
SECRET = "s" * 40
PRODUCT = "demo-market:i1101"


def call(name: str, arguments: dict[str, Any], session: str | None = "chat-1", request_id: Any = 1) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if session is not None:
        params["_meta"] = {"openai/session": session}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


# (label, body: a JSON value or raw bytes, extra headers, answered by the lean endpoint itself)
CASES: list[tuple[str, Any, dict[str, str], bool]] = [
    ("view empty cart", call("view_cart", {}), {}, True),
    ("add", call("add_to_cart", {"product_id": PRODUCT, "quantity": 2}), {}, True),
    ("add again, string id", call("add_to_cart", {"product_id": PRODUCT}, request_id="a-1"), {}, True),
    ("view", call("view_cart", {}, request_id=7), {}, True),
    ("view with a protocol version header", call("view_cart", {}), {"mcp-protocol-version": "2025-06-18"}, True),
    ("bad quantity", call("add_to_cart", {"product_id": PRODUCT, "quantity": 0}), {}, True),
    ("missing argument", call("add_to_cart", {}), {}, True),
    ("unknown tool", call("no_such_tool", {}), {}, True),
    ("unknown method", {"jsonrpc": "2.0", "id": 3, "method": "nope/nope", "params": {}}, {}, True),
    ("tools/list", {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, {}, True),
    ("ping", {"jsonrpc": "2.0", "id": 5, "method": "ping"}, {}, True),
    ("bad params", {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": 5}}, {}, True),
    ("search", call("search_products", {"search": "", "page_size": 2}), {}, True),
    ("no session id", call("view_cart", {}, session=None), {}, True),
    (
        "initialize",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {},
        False,
    ),
    ("notification", {"jsonrpc": "2.0", "method": "notifications/initialized"}, {}, False),
    ("a response", {"jsonrpc": "2.0", "id": 9, "result": {}}, {}, False),
    ("not JSON", b"{not json", {}, False),
    ("a batch", [call("view_cart", {})], {}, False),
    ("not a message", {"jsonrpc": "2.0", "id": 1}, {}, False),
    ("SSE only accepted", call("view_cart", {}), {"Accept": "text/event-stream"}, False),
    ("text content type", call("view_cart", {}), {"Content-Type": "text/plain"}, True),  # the security check
    ("unknown protocol version", call("view_cart", {}), {"mcp-protocol-version": "1999-01-01"}, False),
    ("foreign host", call("view_cart", {}), {"Host": "evil.example"}, True),  # refused as the transport does
]


@contextlib.asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def send(client: httpx.AsyncClient, body: Any, headers: dict[str, str]) -> tuple[int, list[Any], bytes]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post("/mcp", content=content, headers={**ACCEPT, "X-Request-ID": "r-1", **headers})
    kept = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, kept, response.content


@pytest.fixture
def handed_over(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods of the requests the lean endpoint handed to the SDK's path."""
    seen: list[str] = []
    original = LeanStatelessEndpoint._sdk

    async def counting(self: LeanStatelessEndpoint, scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["method"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(LeanStatelessEndpoint, "_sdk", counting)
    return seen


def weft_app(lean: bool, monkeypatch: pytest.MonkeyPatch) -> Starlette:
    settings = Settings(secret_key=SECRET, log_level="INFO")
    with monkeypatch.context() as patch:
        if not lean:
            patch.setattr(app_module, "install_lean_endpoint", lambda *args: False)
        return app_module.create_app(settings)


async def answers(app: Starlette, cases: list[tuple[str, Any, dict[str, str], bool]]) -> list[Any]:
    async with client_for(app) as client:
        return [(label, *(await send(client, body, headers))) for label, body, headers, _ in cases]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, record.getMessage()))


async def logged_answers(app: Starlette) -> tuple[list[Any], list[tuple[str, int, str]]]:
    """The answers to every case, and the lines logged meanwhile (create_app set the root handlers)."""
    lines = Lines()
    logging.getLogger().addHandler(lines)
    try:
        return await answers(app, CASES), lines.lines
    finally:
        logging.getLogger().removeHandler(lines)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


async def test_weft_answers_alike_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, handed_over: list[str], restore_logging: None
) -> None:
    lean, lean_logs = await logged_answers(weft_app(True, monkeypatch))
    delegated = len(handed_over)
    sdk, sdk_logs = await logged_answers(weft_app(False, monkeypatch))
    assert len(handed_over) == delegated  # the SDK-only app has no lean endpoint to count
    for mine, theirs in zip(lean, sdk, strict=True):
        assert mine == theirs, mine[0]
    assert delegated == sum(1 for *_, own in CASES if not own)
    # the lean path really answered the others: a cart was filled and read through it
    view = json.loads(lean[3][3])
    assert view["result"]["structuredContent"]["item_count"] == 3, view
    # what operators see: the same lines (INFO: the session lines; the SDK's own at WARNING)
    assert lean_logs == sdk_logs
    assert sum("Invalid Host header" in line[2] for line in lean_logs) == 1
    assert any("Using session ID" in line[2] for line in lean_logs)


def failing_server_app(lean: bool) -> Starlette:
    """A bare MCPServer whose middleware raises on one method: the dispatcher's catch-all answer (code 0)."""
    server = MCPServer(name="t")

    @server.tool(name="noop", description="Does nothing.")
    async def noop() -> str:
        return "ok"

    async def explode(ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        if ctx.method == "tools/list":
            raise RuntimeError("boom")
        return await call_next(ctx)

    server._lowlevel_server.middleware.append(explode)
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    if lean:
        assert install_lean_endpoint(app, "/mcp", server.session_manager)
    return app


async def test_a_handler_that_raises_is_answered_alike(caplog: pytest.LogCaptureFixture) -> None:
    cases = [
        ("raises", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {}, True),
        ("works", {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noop"}}, {}, True),
    ]
    with caplog.at_level("ERROR", logger="mcp.shared.jsonrpc_dispatcher"):
        lean = await answers(failing_server_app(True), cases)
        lean_logs = [r.getMessage() for r in caplog.records]
        caplog.clear()
        sdk = await answers(failing_server_app(False), cases)
        sdk_logs = [r.getMessage() for r in caplog.records]
    assert lean == sdk
    assert json.loads(lean[0][3])["error"] == {"code": 0, "message": "boom"}
    assert lean_logs == sdk_logs == ["handler for 'tools/list' raised"]


def test_install_refuses_what_it_cannot_serve() -> None:
    server = MCPServer(name="t")
    sse_app = server.streamable_http_app(streamable_http_path="/mcp", json_response=False, stateless_http=True)
    assert not install_lean_endpoint(sse_app, "/mcp", server.session_manager)
    other = MCPServer(name="u")
    app = other.streamable_http_app(streamable_http_path="/mcp", json_response=True, stateless_http=True)
    assert not install_lean_endpoint(app, "/elsewhere", other.session_manager)
    with pytest.raises(ValueError):
        LeanStatelessEndpoint(server.session_manager)


def test_weft_serves_mcp_through_the_lean_endpoint_and_freezes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app installs the lean endpoint, and gc.freeze runs after the tools and the SDK's app are built:
    full collections never walk them (a frozen object is in no collected generation)."""
    import gc

    app = weft_app(True, monkeypatch)
    mount = next(route for route in app.routes if getattr(route, "path", None) == "")
    sdk_app = mount.app.app  # McpEndpointGuard -> the SDK's Starlette app
    route = next(route for route in sdk_app.routes if getattr(route, "path", None) == "/mcp")
    endpoint = route.app
    assert isinstance(endpoint, LeanStatelessEndpoint)
    collected = {id(item) for item in gc.get_objects()}
    assert id(endpoint) not in collected and id(endpoint.manager) not in collected
