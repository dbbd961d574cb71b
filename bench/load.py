"""A lean HTTP/1.1 keep-alive load generator for JSON-RPC ``tools/call`` requests.

Written on asyncio streams rather than httpx because on a two-CPU machine the client must cost
far less than the server it measures: httpx spends more CPU per request than the SDK does, and
the ratio would then measure the client. Each of ``concurrency`` connections sends one request,
waits for its answer, and sends the next (closed loop).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = Callable[[int, int], dict[str, Any]]  # (connection, sequence) -> JSON-RPC message


SESSION_META_KEY = "openai/session"  # what ChatGPT sends: the conversation id the carts are filed under


def tool_call(name: str, arguments: dict[str, Any], session: str | None, request_id: int = 1) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if session is not None:
        params["_meta"] = {SESSION_META_KEY: session}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class Connection:
    """One keep-alive connection; ``call`` returns (status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def call(self, message: dict[str, Any]) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return status, b"".join(p[:-2] for p in parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


@dataclass(frozen=True, slots=True)
class RoundResult:
    calls: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: Any, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Any) -> float:
    return statistics.median(values)


def failed(status: int, body: bytes) -> bool:
    return status != 200 or b'"isError":true' in body or b'"error":' in body[:40]


async def run_round(port: int, body: Body, concurrency: int, seconds: float, warm_up: float = 0.0) -> RoundResult:
    """Closed-loop load for ``seconds`` on ``concurrency`` connections; ``warm_up`` seconds are not counted."""
    connections = [await Connection(port).open() for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    counter = [0] * concurrency
    start = time.perf_counter()
    measure_from = start + warm_up
    deadline = measure_from + seconds

    async def worker(index: int) -> None:
        nonlocal errors
        connection = connections[index]
        while True:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            status, answer = await connection.call(body(index, counter[index]))
            counter[index] += 1
            done = time.perf_counter()
            if sent >= measure_from:
                latencies.append(done - sent)
                if failed(status, answer):
                    errors += 1

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for connection in connections:
            await connection.close()
    elapsed = time.perf_counter() - measure_from
    return RoundResult(len(latencies), errors, elapsed, tuple(latencies))


async def call_once(port: int, message: dict[str, Any]) -> dict[str, Any]:
    connection = await Connection(port).open()
    try:
        status, body = await connection.call(message)
    finally:
        await connection.close()
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    return json.loads(body)
