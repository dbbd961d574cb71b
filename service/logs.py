"""One log format for the CLI, uvicorn and every worker process: text (default) or one-line JSON.

``WEFT_LOG_FORMAT=json`` writes each record as one JSON object per line with the request id of
the HTTP request it belongs to and the shortened id of the conversation calling, so a log
pipeline can group a call's lines without parsing prose. Both ids live in context variables:
the request id is set per HTTP request by ``RequestIdMiddleware``, the session by
``service.sessions.calling_session``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.log_limits import ClientDisconnectFilter, RepeatedRecordFilter

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 64

LogFormat = Literal["text", "json"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("weft_request_id", default=None)
session_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("weft_session", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, process, logger, message, request id, session, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id, session = request_id_var.get(), session_var.get()
        if request_id:
            entry["request_id"] = request_id
        if session:
            entry["session"] = session
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``FORMAT``, with the time text made once a second rather than once a line (a tool call logs one)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._stamp},{int(record.msecs):03d}"


def lean_records() -> None:
    """Records without what neither format prints: the caller's file and line (a stack walk per record), the
    thread and the multiprocessing names. logging's documented switches, set once per process."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Set the root handler once (the SDK's own ``basicConfig`` then leaves it alone); the format may change.

    The handler's filters turn a client that left into one line and rate-limit repeated errors
    (``service.log_limits``), in the order that lets the first feed the second.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_weft", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._weft = True  # type: ignore[attr-defined]
        handler.addFilter(ClientDisconnectFilter())
        handler.addFilter(RepeatedRecordFilter())
        root.handlers = [handler]
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.setLevel(level)
    for name in ("mcp", "uvicorn.access", "httpx"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.WARNING))


def _request_id(scope: Scope) -> str:
    """The caller's (or load balancer's) ``X-Request-ID`` when it is sane, else a fresh one."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text: str = value.decode("latin-1")
            if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isprintable() and " " not in text:
                return text
    return uuid.uuid4().hex[:16]


class RequestIdMiddleware:
    """ASGI middleware: one request id per HTTP request, in the log context and the ``X-Request-ID`` answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
