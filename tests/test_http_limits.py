"""Slow, half-open and too many connections against a real ``weft-mcp serve`` reached directly (no nginx).

Headers and bodies that do not arrive in time are cut off with 408, a worker holds a bounded number of
connections and answers the next one 503 at once, a client that goes away is one short log line, and an
open-file limit far below the number of connections never makes the worker stop answering or flood its log.
Raw sockets play the slow clients; bounds are generous (seconds), the measured figures go to the report.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.processes import ServeProcess

pytestmark = pytest.mark.e2e

REQUEST_HEAD = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Accept: application/json\r\nContent-Length: 200\r\n\r\n"
)


def connect(server: ServeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_until_closed(sock: socket.socket, within: float, drip: bytes | None = None) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (sending ``drip`` now and then meanwhile);
    the answer and the seconds it took. Fails if the connection is still open after ``within`` seconds."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.25)
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if drip is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(drip)
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    raise AssertionError(f"connection still open after {within} s; received {received[:200]!r}")


@contextlib.contextmanager
def open_sockets(server: ServeProcess, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(connect(server))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def healthz(server: ServeProcess, timeout: float = 5) -> int:
    return httpx.get(f"{server.url}/healthz", timeout=timeout).status_code


def test_headers_that_do_not_arrive_in_time_are_cut_off_with_408() -> None:
    with ServeProcess(env={"WEFT_HEADER_TIMEOUT_SECONDS": "1"}) as server:
        silent, partial, dripping = connect(server), connect(server), connect(server)
        partial.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        dripping.sendall(b"GET /healthz HTTP/1.1\r\n")
        # A client that keeps sending header bytes, one every 0.25 s, is cut off all the same.
        answer, seconds = read_until_closed(dripping, within=10, drip=b"X-Slow: y\r\n")
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"connection: close" in answer.lower()
        for sock in (silent, partial):
            answer, _ = read_until_closed(sock, within=10)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
        print(f"slow headers cut off after {seconds:.2f} s (WEFT_HEADER_TIMEOUT_SECONDS=1)")
        # A keep-alive connection gets the same deadline for its next request's headers.
        with connect(server) as reused:
            reused.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reused.settimeout(5)
            first = b""
            while b'"status":"ok"' not in first:
                first += reused.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 "), first
            reused.sendall(b"GET /healthz HTTP/1.1\r\n")
            answer, _ = read_until_closed(reused, within=10, drip=b"X-Slow: y\r\n")
            assert b"HTTP/1.1 408 " in answer, answer
        assert healthz(server) == 200 and server.is_alive()
        assert "Traceback" not in server.log_text()


def test_bodies_that_do_not_arrive_in_time_are_cut_off_and_log_no_traceback() -> None:
    with ServeProcess(env={"WEFT_BODY_TIMEOUT_SECONDS": "1"}) as server:
        slow = [connect(server) for _ in range(3)]
        for sock in slow:
            sock.sendall(REQUEST_HEAD + b'{"jsonrpc": "2.0", ')
        answer, seconds = read_until_closed(slow[0], within=10, drip=b" ")  # keeps trickling spaces
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        for sock in slow[1:]:
            answer, _ = read_until_closed(sock, within=10)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            sock.close()
        slow[0].close()
        print(f"slow body cut off after {seconds:.2f} s (WEFT_BODY_TIMEOUT_SECONDS=1)")
        assert healthz(server) == 200 and server.is_alive()
        time.sleep(0.5)
        log = server.log_text()
        assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]
        assert " ERROR " not in log, log[-3000:]


def test_a_client_that_goes_away_mid_body_is_one_short_line() -> None:
    with ServeProcess() as server:
        before = server.log_text().count("\n")
        for _ in range(4):
            with connect(server) as sock:
                sock.sendall(REQUEST_HEAD + b'{"jsonrpc": "2.0", "id": 1')
                time.sleep(0.2)
        time.sleep(0.5)
        assert healthz(server) == 200 and server.is_alive()
        log = server.log_text()
        new_lines = log.splitlines()[before:]
        assert "Traceback" not in log and "ClientDisconnect" not in log and " ERROR " not in log, log[-3000:]
        assert len(new_lines) <= 4, new_lines  # at most one line per client that left
        assert all(len(line) < 300 for line in new_lines), new_lines


def test_connections_over_the_cap_get_503_at_once() -> None:
    env = {"WEFT_MAX_CONNECTIONS": "20", "WEFT_HEADER_TIMEOUT_SECONDS": "30"}
    with ServeProcess(env=env) as server:
        assert "at most 20 connections" in server.log_text()
        with open_sockets(server, 20) as held:
            time.sleep(0.5)  # all 20 accepted and counted
            refused = []
            for _ in range(10):
                with connect(server) as extra:
                    answer, seconds = read_until_closed(extra, within=5)
                    refused.append(seconds)
                    assert answer.startswith(b"HTTP/1.1 503 "), answer
                    assert b"connection: close" in answer.lower()
            # A client that sends its request at once gets the 503 too (not a reset).
            over = httpx.get(f"{server.url}/healthz", timeout=5)
            assert over.status_code == 503 and over.headers["connection"] == "close"
            print(f"over-cap connections answered 503 in at most {max(refused) * 1000:.0f} ms")
            assert len(held) == 20
        deadline = time.monotonic() + 10
        while healthz(server) != 200:  # the held connections are gone: served again
            assert time.monotonic() < deadline
            time.sleep(0.1)
        log = server.log_text()
        assert log.count("connection limit") <= 2, log[-3000:]  # 11 refusals, rate-limited in the log
        assert "Traceback" not in log


def test_an_open_file_limit_below_the_connections_never_stops_the_worker() -> None:
    """``ulimit -n 128`` and 300 connections that send nothing: the worker keeps answering and its log stays small."""
    env = {"WEFT_HEADER_TIMEOUT_SECONDS": "2"}
    with ServeProcess(env=env, open_files_limit=128) as server:
        log = server.log_text()
        assert "at most 32 connections" in log and "open-file limit 128" in log, log
        started = time.monotonic()
        with open_sockets(server, 300) as held:
            # The last ones are far over any limit: each gets an answer (503 now, or 408 once let in), not silence.
            answers = [read_until_closed(sock, within=30)[0] for sock in held[-20:]]
            assert all(a.startswith((b"HTTP/1.1 503 ", b"HTTP/1.1 408 ")) for a in answers), answers
            # And it answers a well-behaved client again while the 300 are still connected.
            deadline = time.monotonic() + 20
            while True:
                try:
                    if healthz(server, timeout=2) == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, server.log_text()[-3000:]
                time.sleep(0.2)
            print(f"answering /healthz again {time.monotonic() - started:.1f} s after 300 connections")
        time.sleep(3)
        assert server.is_alive() and healthz(server) == 200
        size = server.log_path.stat().st_size
        print(f"log size after 300 connections under ulimit -n 128: {size} bytes")
        assert size < 64_000, server.log_text()[-3000:]
        assert server.log_text().count("Traceback") <= 1
