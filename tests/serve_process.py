"""Run ``weft-mcp serve`` as a real subprocess for end-to-end tests, and talk raw JSON-RPC to it.

``ServeProcess(env={...}).start()`` launches ``python -m service.cli serve --host 127.0.0.1
--port <free port>`` in a fresh temporary working directory (so no stray ``.env`` is read) with
every inherited ``WEFT_*`` variable removed and the given overrides applied, waits until
``GET /healthz`` answers 200, and captures stdout+stderr in a log file (``.log_text()``).
``stop()`` sends SIGTERM, then SIGKILL to the whole process group after 5 s.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.redis_server import free_port

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def serve_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without ``WEFT_*`` (so the developer's settings never leak in), plus overrides."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEFT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["WEFT_SHUTDOWN_DRAIN_SECONDS"] = "0"  # stop() at once, unless a test overrides it
    env.update(overrides or {})
    return env


def serve_command(port: int | None = None, host: str = "127.0.0.1", extra_args: Sequence[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "service.cli", "serve", "--host", host]
    if port is not None:
        command += ["--port", str(port)]
    return [*command, *extra_args]


@dataclass
class ServeProcess:
    """One ``weft-mcp serve`` process (and, with ``--workers N``, its workers)."""

    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    startup_timeout: float = 20.0
    stop_timeout: float = 5.0
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-serve-")))
    open_files_limit: int | None = None  # RLIMIT_NOFILE (soft and hard) of the server, as `ulimit -n N`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    @property
    def log_path(self) -> Path:
        return self.workdir / "serve.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServeProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                serve_command(self.port, extra_args=self.extra_args),
                cwd=self.workdir,
                env=serve_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can reach uvicorn's workers too
                preexec_fn=self._limit_open_files if self.open_files_limit else None,
            )
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    self.process = None
                    raise RuntimeError(
                        f"weft-mcp serve exited with {code} before answering /healthz:\n{self.log_text()}"
                    )
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"weft-mcp serve on port {self.port} did not answer /healthz within {self.startup_timeout} s:\n"
            + self.log_text()
        )

    def _limit_open_files(self) -> None:
        assert self.open_files_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in its process group (a stuck worker, or the leader itself) is killed.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.wait(timeout=5)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------- raw JSON-RPC, as a plain script would


def tool_call_message(
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    envelope_meta: Mapping[str, Any] | None = None,
    request_id: int = 1,
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
    if meta is not None:
        params["_meta"] = dict(meta)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    if envelope_meta is not None:
        message["_meta"] = dict(envelope_meta)
    return message


async def _burst(urls: Sequence[str], session_id: str, product_id: str, count: int, offset: int) -> list[bool]:
    async with httpx.AsyncClient(timeout=20.0) as client:

        async def one(index: int) -> bool:
            url = urls[(index + offset) % len(urls)]
            message = tool_call_message(
                "add_to_cart",
                {"product_id": product_id, "quantity": 1},
                meta={"sessionId": session_id},
                request_id=index,
            )
            response = await client.post(url, json=message, headers=JSON_HEADERS)
            if response.status_code != 200:
                return False
            return not response.json()["result"].get("isError", False)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def add_burst(urls: Sequence[str], session_id: str, product_id: str, count: int, offset: int = 0) -> list[bool]:
    """``count`` concurrent ``add_to_cart`` quantity 1 calls, alternating over ``urls``; for a client OS process."""
    return asyncio.run(_burst(urls, session_id, product_id, count, offset))


# ---------------------------------------------------------------- many adds, with what each one got back

AddCall = tuple[str, str]  # (session id, product id); each call adds quantity 1


async def _add_calls(urls: Sequence[str], calls: Sequence[AddCall], tasks: int, offset: int) -> list[bool | None]:
    """``tasks`` concurrent tasks share ``calls``; each outcome is True (acknowledged: the answer showed
    the add), False (an ``isError`` answer) or None (no answer: dropped connection, 5xx, timeout)."""
    outcomes: list[bool | None] = [None] * len(calls)
    queue = list(enumerate(calls))
    queue.reverse()
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def task() -> None:
            while queue:
                index, (session_id, product_id) = queue.pop()
                message = tool_call_message(
                    "add_to_cart", {"product_id": product_id, "quantity": 1}, meta={"sessionId": session_id},
                    request_id=index,
                )  # fmt: skip
                try:
                    response = await client.post(urls[(index + offset) % len(urls)], json=message, headers=JSON_HEADERS)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    outcomes[index] = not response.json()["result"].get("isError", False)

        await asyncio.gather(*(task() for _ in range(tasks)))
    return outcomes


def add_calls(urls: Sequence[str], calls: Sequence[AddCall], tasks: int, offset: int = 0) -> list[bool | None]:
    """Run ``calls`` (one ``add_to_cart`` quantity 1 each) on ``tasks`` concurrent tasks, alternating over
    ``urls``; callable in a client OS process. See ``_add_calls`` for the outcomes."""
    return asyncio.run(_add_calls(urls, calls, tasks, offset))


def call_tool(
    url: str, name: str, arguments: Mapping[str, Any] | None = None, *, session: str, timeout: float = 10.0
) -> dict[str, Any]:
    """One raw JSON-RPC ``tools/call`` to ``url`` (an ``/mcp`` URL) for conversation ``session``; the result."""
    message = tool_call_message(name, arguments, meta={"sessionId": session})
    response = httpx.post(url, json=message, headers=JSON_HEADERS, timeout=timeout)
    response.raise_for_status()
    return response.json()["result"]
