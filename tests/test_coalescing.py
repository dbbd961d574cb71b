"""One ``send`` per answer (``CoalescingTransport``), and the text log format made once a second."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from service.http_server import CoalescingTransport
from service.logs import FORMAT, TextFormatter


class RecordingTransport:
    """What the socket transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_loop_turn_leave_as_one() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b'{"a":1}')
    assert inner.calls == []  # nothing sent before the loop turn ends
    await asyncio.sleep(0)
    assert inner.calls == [("write", b'HTTP/1.1 200 OK\r\n\r\n{"a":1}')]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.calls[-1] == ("write", b"next")
    assert transport.get_extra_info("peername") == "info:peername"  # everything else is the socket's


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"408 answer")
    transport.close()
    assert inner.calls == [("write", b"408 answer"), ("close", None)]
    await asyncio.sleep(0)
    assert len(inner.calls) == 2  # the scheduled flush finds nothing left

    dropped = RecordingTransport()
    transport = CoalescingTransport(dropped, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"half an answer")
    transport.abort()
    await asyncio.sleep(0)
    assert dropped.calls == [("abort", None)]


async def test_nothing_is_written_to_a_closing_socket() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"late")
    inner.closing = True  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert inner.calls == []


def test_text_format_is_logging_s_own() -> None:
    plain, cached = logging.Formatter(FORMAT), TextFormatter()
    for created in (1_700_000_000.0, 1_700_000_000.25, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.0):
        record = logging.LogRecord("service.sessions", logging.INFO, "", 0, "Using session ID: %s", ("abc",), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert cached.format(record) == plain.format(record)
