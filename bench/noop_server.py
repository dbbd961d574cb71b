"""The bare SDK floor for bench (a): one no-op tool on an ``MCPServer``, nothing else.

Served exactly as ``weft-mcp serve`` serves Weft (stateless JSON at /mcp, one uvicorn worker,
``factory=True``, ``log_config=None``), so the ratio measures what Weft adds: session lookup,
catalog, Redis, answers, metrics and logging.
"""

from __future__ import annotations

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route


def create_app() -> Starlette:
    server = MCPServer(name="noop")

    @server.tool(name="noop", description="Does nothing.")
    async def noop() -> str:
        return "ok"

    mcp_app = server.streamable_http_app(streamable_http_path="/mcp", json_response=True, stateless_http=True)

    async def healthz(request: object) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/healthz", healthz), Mount("/", app=mcp_app)],
        lifespan=lambda app: server.session_manager.run(),
    )


def main() -> None:
    uvicorn.run(
        "bench.noop_server:create_app",
        factory=True,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=1,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
