"""How uvicorn is run: deadlines for slow clients, a connection cap per worker, SIGHUP that reloads.

uvicorn alone has no deadline for a request's headers or body (its keep-alive timer only runs
between requests) and accepts connections until the process runs out of file descriptors, after
which asyncio logs an ``accept()`` traceback on every retry and the worker answers no one. Served
directly (no nginx in front), each worker therefore runs ``GuardedH11Protocol``:

- a request's headers must arrive within ``WEFT_HEADER_TIMEOUT_SECONDS`` of the connection (or of
  the first byte of the next request on a kept-alive one), its body within
  ``WEFT_BODY_TIMEOUT_SECONDS`` of the headers; otherwise 408 and the connection is closed;
- a connection beyond ``max_connections`` open in this worker is answered 503 at once and closed,
  before anything is read, so slow clients cannot starve everyone of descriptors.

The cap is ``WEFT_MAX_CONNECTIONS``, lowered to fit the open-file limit (see ``connection_limits``).
The protocol is h11 explicitly: that is what ``http="auto"`` picks here (no httptools installed),
and the deadlines are written against h11's connection states.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors.multiprocess import Multiprocess

from service.config import Settings
from service.log_limits import RATE_LIMITED
from service.reloading import install_sighup_handler

logger = logging.getLogger(__name__)

APP = "service.app:create_app"
GRACEFUL_SHUTDOWN_SECONDS = 10
KEEP_ALIVE_SECONDS = 5  # uvicorn's default; deploy/nginx.conf's upstream keepalive (4 s) stays under it
FD_RESERVE = 64  # descriptors kept for the listening socket, logs, metrics files, the supervisor pipe
MAX_ACCEPT_BURST = 2048  # uvicorn's default backlog
MIN_ACCEPT_BURST = 8


def _plain_response(status: int, reason: str, text: str, extra: str = "") -> bytes:
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


BUSY_RESPONSE = _plain_response(
    503, "Service Unavailable", "Too many open connections to this worker, retry in a moment.", "retry-after: 1\r\n"
)
TIMEOUT_RESPONSE = _plain_response(408, "Request Timeout", "The request did not arrive in time.")
DEADLINE_MESSAGES = {
    "headers": "Request headers from %s not received within %g s: closed with 408",
    "body": "Request body from %s not received within %g s: closed with 408",
}


@dataclass(frozen=True)
class ConnectionLimits:
    """What ``GuardedH11Protocol`` enforces in each worker."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    open_files: int | None  # the soft RLIMIT_NOFILE; None = unlimited
    accept_burst: int = MAX_ACCEPT_BURST  # uvicorn's backlog: listen() queue, and accept()s per loop turn

    def describe(self, configured: int) -> str:
        lowered = f" (WEFT_MAX_CONNECTIONS={configured}, lowered to fit)" if configured != self.max_connections else ""
        files = "unlimited" if self.open_files is None else str(self.open_files)
        return (
            f"HTTP limits: at most {self.max_connections} connections per worker{lowered}, open-file limit {files}; "
            f"headers within {self.header_timeout:g} s, bodies within {self.body_timeout:g} s"
        )


def connection_limits(settings: Settings) -> ConnectionLimits:
    """``WEFT_MAX_CONNECTIONS``, but at most half the descriptors left after ``FD_RESERVE``.

    Half, because a connection whose call is running may hold a Redis connection too, and because
    asyncio accepts up to ``accept_burst`` connections per loop turn before the cap can refuse any:
    a few such bursts must fit in what the cap leaves spare. So ``ulimit -n 256`` gives 96
    connections and bursts of 12, and ``accept()`` does not run out of descriptors.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_files = None if soft == resource.RLIM_INFINITY else soft
    cap, burst = settings.max_connections, MAX_ACCEPT_BURST
    if open_files is not None:
        usable = max(2, open_files - FD_RESERVE)
        cap = min(cap, usable // 2)
        burst = max(MIN_ACCEPT_BURST, min(MAX_ACCEPT_BURST, (usable - cap) // 8))
    return ConnectionLimits(cap, settings.header_timeout_seconds, settings.body_timeout_seconds, open_files, burst)


class WeftConfig(uvicorn.Config):
    """uvicorn's Config with our limits, and the SIGHUP handler installed in every process.

    ``configure_logging`` is the first thing uvicorn runs in a freshly spawned worker (and runs in
    the parent from ``__init__``), so a SIGHUP never finds a worker with the default action.
    """

    def __init__(self, app: str, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        self.limits = limits
        super().__init__(app, **kwargs)

    def configure_logging(self) -> None:
        super().configure_logging()
        install_sighup_handler()


class CoalescingTransport:
    """A socket transport whose writes within one turn of the event loop leave as one ``send``.

    uvicorn writes an answer's head and body separately, and each write to a socket is a system
    call that wakes the reader: on a virtual machine that costs about as much as the head's
    parsing and routing together (``python -m bench --profile``). The bytes and their order are
    unchanged; they leave at the end of the same loop turn, so no answer waits for another event.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, deadlines for a request's headers and body, and
    one ``send`` per answer (``CoalescingTransport``)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = config.limits  # type: ignore[attr-defined]
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: str | None = None  # "headers" or "body"
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            self._refused = True
            self.connections.discard(self)
            logger.warning(
                "Over the connection limit (%d per worker): answered 503 and closed",
                self.limits.max_connections,
                extra={RATE_LIMITED: True},
            )
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._set_deadline("headers")

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._follow_request(data_arrived=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request(data_arrived=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def _follow_request(self, data_arrived: bool) -> None:
        """Set the deadline for what the client owes us now: the next request's headers, or this body."""
        if self.transport.is_closing():
            self._clear_deadline()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests nothing is owed (uvicorn's keep-alive timer runs) until a byte arrives.
            if data_arrived or self.conn.trailing_data[0]:
                self._set_deadline("headers")
            else:
                self._clear_deadline()
        elif state is h11.SEND_BODY:
            self._set_deadline("body")
        else:
            self._clear_deadline()

    def _set_deadline(self, waiting_for: str) -> None:
        if self._deadline_for == waiting_for:
            return  # the clock runs from the start of the wait, not from the last byte
        self._clear_deadline()
        seconds = self.limits.header_timeout if waiting_for == "headers" else self.limits.body_timeout
        self._deadline_for = waiting_for
        self._deadline = self.loop.call_later(seconds, self._deadline_passed, waiting_for, seconds)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._deadline_for = None, None

    def _deadline_passed(self, waiting_for: str, seconds: float) -> None:
        self._deadline, self._deadline_for = None, None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        template = DEADLINE_MESSAGES[waiting_for]  # one template per kind: the rate limit counts each apart
        logger.info(template, client, seconds, extra={RATE_LIMITED: True})
        cycle = self.cycle if waiting_for == "body" else None  # headers: the last cycle is over
        if cycle is None or not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        if cycle is not None:
            cycle.keep_alive = False
        self.transport.close()


class SighupForwardingSupervisor(Multiprocess):
    """uvicorn's supervisor, except that SIGHUP is passed on to the workers instead of replacing them."""

    def handle_hup(self) -> None:
        logger.info("SIGHUP: passed on to %d worker(s), which reload without restarting", len(self.processes))
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass


def serve(settings: Settings, **uvicorn_options: Any) -> None:
    """Run the app factory in ``settings.workers`` processes (one: in this process) until stopped."""
    limits = connection_limits(settings)
    logger.info(limits.describe(settings.max_connections))
    config = WeftConfig(
        APP,
        limits=limits,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=GuardedH11Protocol,
        backlog=limits.accept_burst,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=None,
        **uvicorn_options,
    )
    try:
        if config.workers > 1:
            SighupForwardingSupervisor(config, sockets=[config.bind_socket()]).run()
            return
        server = uvicorn.Server(config)
        server.run()
    except KeyboardInterrupt:
        return
    if not server.started:
        sys.exit(STARTUP_FAILURE)
