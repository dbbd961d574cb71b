"""POST /mcp without the SDK's per-request plumbing: the same answer, one task, no streams.

For every stateless request the SDK's transport builds a ``StreamableHTTPServerTransport``, two
pairs of memory streams, a message-router task, a ``JSONRPCDispatcher`` with its own task group
and a task per request, then hands the request through the streams and waits for its answer on
a third one. Measured with ``python -m bench --profile``, that plumbing costs about as much CPU
as a whole cart call. ``LeanStatelessEndpoint`` replaces only the endpoint the SDK mounts at
``/mcp``: for the one shape that needs none of it (a JSON-RPC request other than ``initialize``,
from a handshake-era client, passing the transport's own checks) it runs the SDK's
``ServerRunner`` (its per-request kernel, with every server middleware) directly in the HTTP
request's task and writes the reply exactly as the transport would. Anything else (GET,
notifications, ``initialize``, a bad body, a 2026-era request, a failed header check) goes to the
SDK's own ``handle_request`` untouched, so the SDK still words every refusal.

tests/test_mcp_endpoint.py checks both paths answer byte for byte alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pydantic_core
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import RequestBodyLimitMiddleware, TransportSecurityMiddleware
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
# Where the SDK's dispatcher logs a handler that raised: the same logger, so operators' filters still apply.
dispatcher_logger = logging.getLogger("mcp.shared.jsonrpc_dispatcher")

PROTOCOL_VERSION_HEADER = b"mcp-protocol-version"
JSON_HEADERS = {"Content-Type": "application/json"}
STATELESS_TRANSPORT = TransportContext(kind="streamable-http", can_send_request=False)


@dataclass
class _RequestContext:
    """The dispatch context the SDK's dispatcher gives a stateless JSON request (``DispatchContext``).

    A JSON answer carries only the response, so there is no back-channel: a server request raises
    ``NoBackChannelError`` and notifications are dropped, as the SDK's message router drops them.
    """

    request_id: RequestId
    message_metadata: ServerMessageMetadata
    transport: TransportContext = STATELESS_TRANSPORT
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)

    @property
    def can_send_request(self) -> bool:
        return False

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        logger.debug("Dropped %s for request %r: a JSON answer carries only the response", method, self.request_id)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


async def _never_unanswered() -> None:
    """``on_request_unanswered``: only a peer's ``notifications/cancelled`` leaves a request unanswered, and a
    stateless request cannot be named by one (each POST is its own connection)."""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then what the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_content_type(scope: Scope) -> bool:
    """The transport's own Content-Type test: one of the comma-separated types before any ``;`` is JSON."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            first = value.decode("latin-1").split(";")[0]
            return any(part.strip() == "application/json" for part in first.split(","))
    return False


class LeanStatelessEndpoint:
    """The ASGI endpoint at /mcp for a stateless JSON session manager (see module doc)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        if not (manager.stateless and manager.json_response):
            raise ValueError("the lean endpoint serves stateless JSON answers only")
        self.manager = manager
        self.security = TransportSecurityMiddleware(manager.security_settings)
        self.app: ASGIApp = RequestBodyLimitMiddleware(self._serve, manager.max_request_body_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def _lifespan_state(self) -> tuple[bool, Any]:
        """(running, state): the manager enters the server's lifespan once, in ``run()``."""
        return self.manager._task_group is not None, self.manager._lifespan_state

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        running, lifespan_state = self._lifespan_state()
        version = next((v.decode("latin-1") for k, v in scope["headers"] if k == PROTOCOL_VERSION_HEADER), None)
        request = Request(scope, receive)
        if (
            not running
            or scope["method"] != "POST"
            or (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS)
        ):
            await self._sdk(scope, receive, send)
            return
        refusal = await self.security.validate_request(request, is_post=True)  # the transport's first check
        if refusal is not None:
            await refusal(scope, receive, send)  # the SDK's own answer (checking again would log twice)
            return
        if not check_accept_headers(request)[0] or not _json_content_type(scope):
            await self._sdk(scope, receive, send)
            return
        body = await request.body()
        message = self._request_in(body)
        if message is None:
            await self._sdk(scope, _replaying(body, receive), send)
            return
        await self._answer(message, request, version or DEFAULT_NEGOTIATED_VERSION, lifespan_state, send)

    async def _sdk(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)

    @staticmethod
    def _request_in(body: bytes) -> JSONRPCRequest | None:
        """The body as the transport reads it, when it is a request this endpoint answers itself."""
        try:
            message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
        except ValueError:  # not JSON, or not a JSON-RPC message (pydantic's ValidationError is a ValueError)
            return None
        if not isinstance(message, JSONRPCRequest) or message.method == "initialize":
            return None
        return message

    async def _answer(
        self, message: JSONRPCRequest, request: Request, version: str, lifespan_state: Any, send: Send
    ) -> None:
        """What the SDK's stateless session does for one request: a fresh born-ready connection at the header's
        version, the runner's ``on_request``, the dispatcher's mapping of exceptions, the transport's JSON body."""
        connection = Connection.from_envelope(version, None, None)
        metadata = ServerMessageMetadata(
            request_context=request, on_request_unanswered=_never_unanswered, can_send_request=False
        )
        context = _RequestContext(request_id=message.id, message_metadata=metadata)
        runner = ServerRunner(self.manager.app, connection, lifespan_state)
        reply: JSONRPCResponse | JSONRPCError
        try:
            try:
                result = await runner.on_request(context, message.method, message.params)
                reply = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
            except Exception as exc:
                error = handler_exception_to_error_data(exc)
                if error is None:
                    dispatcher_logger.exception("handler for %r raised", message.method)
                    error = ErrorData(code=0, message=str(exc))  # the dispatcher's wording, kept for clients
                reply = JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
            body = reply.model_dump_json(by_alias=True, exclude_unset=True)
            await Response(body, status_code=200, headers=JSON_HEADERS)(request.scope, request.receive, send)
        finally:
            await aclose_shielded(connection)


def install_lean_endpoint(app: Any, path: str, manager: StreamableHTTPSessionManager) -> bool:
    """Put a ``LeanStatelessEndpoint`` where the SDK app's ``path`` route reaches its ``StreamableHTTPASGIApp``
    (under the auth guards, which stay). False, and the SDK's endpoint kept, when the route is not as expected
    or the manager lacks what the lean path reads (``_task_group``, ``_lifespan_state``)."""
    if not (manager.stateless and manager.json_response):
        return False
    if not (hasattr(manager, "_task_group") and hasattr(manager, "_lifespan_state")):
        logger.warning("This MCP SDK's session manager is not as expected: POST /mcp served by the SDK's own path")
        return False
    for route in getattr(app, "routes", ()):
        if getattr(route, "path", None) != path:
            continue
        parent: Any = route
        while parent is not None:
            child = getattr(parent, "app", None)
            if isinstance(child, StreamableHTTPASGIApp) and child.session_manager is manager:
                parent.app = LeanStatelessEndpoint(manager)
                return True
            parent = child
    logger.warning("The MCP SDK's %s route is not as expected: POST %s served by the SDK's own path", path, path)
    return False
