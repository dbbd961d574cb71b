"""One plain sentence for a POST /mcp body that is not one JSON-RPC message, never the input echoed back.

The SDK answers such a body with 400 and the parser's or pydantic's text: four to eleven
"validation errors for union[JSONRPCRequest, ...]" quoting the input (for a JSON-RPC batch of
1,000 calls, the start of the batch), or "Parse error: ... at line 1 column 2". ``PlainEnvelopeErrors``
rewrites only those answers (a 400 whose JSON-RPC error has no id), so a valid request costs nothing
more than a look at the first bytes of its body: a body starting with ``[`` is a batch, which the
Streamable HTTP transport of these protocol versions does not take.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
JSON_WHITESPACE = b" \t\r\n"

BATCH_NOT_SUPPORTED = (
    "JSON-RPC batches are not supported by MCP's Streamable HTTP transport, so send one JSON-RPC message per POST."
)
NOT_JSON = "Parse error: the request body is not valid JSON text in UTF-8."
NOT_A_MESSAGE = (
    'Invalid Request: the body must be one JSON-RPC 2.0 object with jsonrpc "2.0", a string method, '
    "object params if any and a string or integer id."
)


def plain_error(body: bytes, batch: bool) -> bytes | None:
    """The rewritten answer for one of the SDK's envelope errors, or ``None`` to leave ``body`` alone."""
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or answer.get("id") is not None:
        return None  # an error about one request, with its id, is the method's own answer
    if batch:
        code, message = INVALID_REQUEST, BATCH_NOT_SUPPORTED
    elif error.get("code") == PARSE_ERROR:
        code, message = PARSE_ERROR, NOT_JSON
    else:
        code, message = INVALID_REQUEST, NOT_A_MESSAGE
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()


class PlainEnvelopeErrors:
    """ASGI middleware for POST /mcp: the SDK's 400 envelope errors become one sentence (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        first_byte = b""  # the body's first non-whitespace byte, once seen
        held_start: Message | None = None
        held_body: list[bytes] = []

        async def receive_noting_first_byte() -> Message:
            nonlocal first_byte
            message = await receive()
            if not first_byte and message["type"] == "http.request":
                first_byte = message.get("body", b"").lstrip(JSON_WHITESPACE)[:1]
            return message

        async def send_rewriting_400(message: Message) -> None:
            nonlocal held_start
            if message["type"] == "http.response.start" and message["status"] == 400:
                held_start = message  # wait for the body: its length may change
                return
            if held_start is None or message["type"] != "http.response.body":
                await send(message)
                return
            held_body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            original = b"".join(held_body)
            body = plain_error(original, batch=first_byte == b"[") or original
            headers = [(k, v) for k, v in held_start.get("headers", []) if k.lower() != b"content-length"]
            await send({**held_start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive_noting_first_byte, send_rewriting_400)
