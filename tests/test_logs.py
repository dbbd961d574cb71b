"""WEFT_LOG_FORMAT=json: one JSON object per line, with the request id and the shortened session id."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from service.logs import JsonFormatter, configure_logging, request_id_var, session_var


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


def test_json_formatter_one_line_with_context() -> None:
    record = logging.LogRecord("weft.test", logging.WARNING, __file__, 1, "two\nlines %s", ("x",), None)
    tokens = request_id_var.set("req-1"), session_var.set("chat-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(tokens[0])
        session_var.reset(tokens[1])
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines x"
    assert entry["level"] == "WARNING" and entry["logger"] == "weft.test"
    assert entry["request_id"] == "req-1" and entry["session"] == "chat-1"


def test_text_format_stays_the_default(restore_logging) -> None:
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    assert not isinstance(handler.formatter, JsonFormatter)
    configure_logging("INFO", "json")
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)
    assert len(logging.getLogger().handlers) == 1


async def test_tool_call_logs_carry_request_and_session_ids(restore_logging) -> None:
    settings = Settings(log_format="json", log_level="INFO")
    app = create_app(settings)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    long_id = "conversation-" + "x" * 40
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "view_cart", "arguments": {}, "_meta": {"sessionId": long_id}},
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.post(
                "/mcp", json=message, headers={"Accept": "application/json, text/event-stream", "X-Request-ID": "r-42"}
            )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "r-42"
    entries = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    session_lines = [e for e in entries if "Using session ID" in e["message"]]
    assert session_lines, entries
    assert session_lines[0]["request_id"] == "r-42"
    assert session_lines[0]["session"] == "conversa…(53)"
    assert long_id not in stream.getvalue()  # logs show ids shortened


def test_a_flood_of_one_error_is_one_line_per_window(restore_logging, monkeypatch) -> None:
    """asyncio's "socket.accept() out of system resource" (with a traceback), once per retry, logged once;
    the next one after the window says how many were dropped. Ordinary warnings are never dropped."""
    import asyncio

    from service import log_limits

    configure_logging("INFO")
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    now = [1000.0]
    monkeypatch.setattr(log_limits.time, "monotonic", lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        for fd in range(500):
            try:
                raise OSError(24, "Too many open files")
            except OSError as exc:
                loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": exc, "socket": f"fd={fd % 2}"}
                )
        assert stream.getvalue().count("out of system resource") == 1
        assert stream.getvalue().count("Traceback") == 1
        now[0] += log_limits.REPEAT_WINDOW_SECONDS + 1
        loop.call_exception_handler(
            {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")}
        )
    finally:
        loop.close()
    assert stream.getvalue().count("out of system resource") == 2
    assert "(and 499 more like it in the 10 s before)" in stream.getvalue()
    for _ in range(5):
        logging.getLogger("service.sessions").warning("No conversation id: filed under the shared cart")
    assert stream.getvalue().count("No conversation id") == 5


def test_different_errors_of_one_template_all_show(restore_logging) -> None:
    """Rate limiting is for *identical* errors: two bad store folders logged through one format string are two
    lines, while the same error repeated is still one."""
    configure_logging("INFO")
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    log = logging.getLogger("service.catalog")
    for folder in ("bad-a", "bad-b", "bad-c", "bad-a", "bad-a"):
        log.error("Store folder %s skipped: cannot read it", folder)
    lines = stream.getvalue().splitlines()
    assert [line.split("Store folder ")[1] for line in lines] == [
        f"{folder} skipped: cannot read it" for folder in ("bad-a", "bad-b", "bad-c")
    ]
