"""The HTTP app: ``POST /mcp`` (stateless JSON, both protocol eras), ``/healthz`` and ``/readyz``.

The lifespan owns the per-worker resources: the SDK's session manager and the cart store's
Redis pool, closed when the worker stops.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service import widget_views
from service.auth import TokensFileVerifier, allow_anonymous, build_auth
from service.carts import CartStorageError, CartStore
from service.catalog import load_catalog
from service.config import Settings
from service.jsonrpc_errors import PlainEnvelopeErrors
from service.logs import RequestIdMiddleware, configure_logging, lean_records
from service.mcp_endpoint import install_lean_endpoint
from service.metrics import mark_worker_dead, metrics_endpoint
from service.playground import playground_route
from service.readiness import storage_readiness
from service.reloading import on_sighup
from service.shutdown import Drain
from service.tools import Shop, create_server
from service.transfer_sweep import sweep_forever

logger = logging.getLogger(__name__)

# How long a search thread may keep the GIL while the event loop waits for it (Python's default is
# 5 ms, and one HTTP answer needs the GIL several times): searches yield between slices, this bounds
# the wait inside a slice. Measured cost on ordinary calls: see BENCHMARKS.md.
GIL_SWITCH_SECONDS = 0.0005

MCP_PATH = "/mcp"


class McpEndpointGuard:
    """What the SDK does not do for a stateless JSON server: 405 on GET, no ``Accept`` = JSON, and
    plain one-sentence errors for a body that is not one JSON-RPC message (``PlainEnvelopeErrors``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.post = PlainEnvelopeErrors(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == MCP_PATH:
            scope = {**scope, "path": MCP_PATH}  # "/mcp/" too, rather than a redirect
            if scope["method"] == "GET":
                # A stateless GET would hold an SSE stream open forever; there is nothing to stream.
                response = JSONResponse(
                    {"error": "GET is not served here: POST JSON-RPC messages to /mcp"},
                    status_code=405,
                    headers={"Allow": "POST"},
                )
                await response(scope, receive, send)
                return
            headers = scope["headers"]
            if not any(name == b"accept" for name, _ in headers):
                scope = {**scope, "headers": [*headers, (b"accept", b"application/json")]}
            await self.post(scope, receive, send)
            return
        await self.app(scope, receive, send)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """``WEFT_ALLOWED_HOSTS``: hosts (any port unless one is given) the Host/Origin headers may name; ``*`` = any."""
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    for host in settings.allowed_hosts:
        has_port = host.rsplit("]", 1)[-1].count(":") == 1
        hosts += [host] if has_port else [host, f"{host}:*"]
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def create_app(settings: Settings | None = None, widgets_dir: Path | None = None) -> Starlette:
    """Build one worker's app; uvicorn calls this in every worker process (``factory=True``).

    ``widgets_dir`` (tests) holds the widget views instead of the package's ``service/widgets``."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    lean_records()  # a worker logs a line per tool call: no caller lookup per line
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    catalog = load_catalog(settings.stores_dir)
    carts = CartStore.from_settings(settings)
    auth = build_auth(settings)  # None unless WEFT_AUTH_TOKENS_FILE or the WEFT_AUTH_JWKS_URL trio is set
    shop = Shop(catalog=catalog, carts=carts, settings=settings)  # one Shop, so one cart_id signer, per worker
    views = widget_views.load_widget_views(widgets_dir or widget_views.WIDGETS_DIR, catalog, settings.widget_domain)
    server = create_server(shop, auth, views)
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=True,
        max_request_body_size=settings.max_body_bytes,  # 413 before parsing
        transport_security=transport_security(settings),
        host=settings.host,
    )
    install_lean_endpoint(mcp_app, MCP_PATH, server.session_manager)  # same answers, without per-request streams
    # The catalog, the tools and the SDK's models live as long as the worker: full collections need not walk them.
    gc.freeze()
    if auth is not None and settings.auth_mode == "optional":
        allow_anonymous(mcp_app, MCP_PATH)  # no token = an anonymous shopper; a bad token is still 401
    elif auth is None and settings.token_kind != "none":
        logger.warning("WEFT_AUTH_MODE=off: the configured tokens are not asked for; every caller is anonymous")

    drain = Drain(settings.shutdown_drain_seconds)

    async def healthz(request: Request) -> JSONResponse:
        # "client": the caller's address as this worker sees it (X-Forwarded-For only from WEFT_TRUSTED_PROXIES).
        client = request.client.host if request.client else None
        return JSONResponse({"status": "ok", "client": client})

    async def readyz(request: Request) -> JSONResponse:
        if drain.draining:
            return JSONResponse({"status": "draining", "reason": "shutting down (SIGTERM)"}, status_code=503)
        # the tools' path: auth, the ACL rights the enabled tools need, memory (service.readiness)
        status, body = await storage_readiness(carts, debug_tool=settings.debug_tool)
        return JSONResponse(body, status_code=status)

    async def metrics(request: Request) -> Response:
        # a scrape sees the store's condition now (weft_cart_storage_condition)
        await storage_readiness(carts, debug_tool=settings.debug_tool)
        return await metrics_endpoint(request)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            # SIGHUP itself is handled in every worker (service.reloading); this is what it reloads.
            tokens = auth.verifier if auth and isinstance(auth.verifier, TokensFileVerifier) else None
            restore_sighup = on_sighup(tokens.reload) if tokens else (lambda: None)
            restore_sigterm = drain.install()
            try:
                await carts.ping()
                logger.info("Cart storage ready: %s", carts.backend)
                await shop.secret.cart_ids()  # WEFT_SECRET_KEY unset with Redis: the generated one, read once
            except CartStorageError:
                logger.warning("Cart storage (%s) is not answering yet; /readyz says 503 until it does", carts.backend)
            try:
                async with anyio.create_task_group() as background:
                    # One worker a minute (a lease in Redis) finishes transfers a dead worker or Redis left midway.
                    background.start_soon(sweep_forever, carts.transfers, shop.current_line)
                    try:
                        yield
                    finally:
                        background.cancel_scope.cancel()
            finally:
                restore_sighup()
                restore_sigterm()
                await carts.aclose()
                logger.info("Cart storage closed: %s", carts.backend)
                mark_worker_dead()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *([playground_route(settings, views)] if settings.playground else []),
            Mount("/", app=McpEndpointGuard(mcp_app)),
        ],
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],  # X-Request-ID, and the request id of JSON log lines
    )
