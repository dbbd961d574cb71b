"""Processes the bench starts and stops itself: private redis-servers and HTTP servers on loopback.

Every process is pinned to a CPU where the machine has two or more, so the server under test
and the load generator never fight for one core.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
SHIPPED_REDIS_CONF = REPO / "deploy" / "redis.conf"
# What deploy/redis.conf must carry for cart lines to stay listpack-encoded (see BENCHMARKS.md):
# the longest real line value is 180 bytes; a cart holds at most 100 lines + _last_accessed.
LISTPACK_ARGS = ("--hash-max-listpack-value", "256", "--hash-max-listpack-entries", "128")


def shipped_encoding_settings() -> list[str]:
    """The ``*-max-listpack-*`` / ``*-max-ziplist-*`` lines of deploy/redis.conf, as command-line arguments."""
    if not SHIPPED_REDIS_CONF.is_file():
        return []
    args: list[str] = []
    for line in SHIPPED_REDIS_CONF.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and ("-max-listpack-" in words[0] or "-max-ziplist-" in words[0]):
            args += ["--" + words[0], words[1]]
    return args


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpu_index: int) -> None:
    """Pin ``pid`` to the ``cpu_index``-th usable CPU; a no-op on a one-CPU machine."""
    usable = cpus()
    if len(usable) >= 2:
        os.sched_setaffinity(pid, {usable[cpu_index % len(usable)]})


def unpin(pid: int = 0) -> None:
    os.sched_setaffinity(pid, set(range(os.cpu_count() or 1)) & set(cpus()) or set(cpus()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen[bytes] | None, group: bool = False) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=5)


@dataclass
class RedisServer:
    """A private ``redis-server``; ``shipped=True`` uses deploy/redis.conf (or its listpack settings)."""

    shipped: bool = True
    cpu: int = 0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-bench-redis-")))
    config_source: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server is not installed")
        # Loopback, no persistence, no memory cap: the bench's own server. Of the shipped file only the
        # encoding settings apply (its bind, dir, AOF and maxmemory are for a deployment, not a bench).
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.workdir), "--daemonize", "no"]  # fmt: skip
        if self.shipped:
            settings = shipped_encoding_settings()
            self.config_source = "deploy/redis.conf" if settings else "listpack settings on the command line"
            command += settings or list(LISTPACK_ARGS)
            self.config_source += " (" + " ".join(settings or LISTPACK_ARGS) + ")"
        else:
            self.config_source = "Redis defaults"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pin(self.process.pid, self.cpu)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class HttpServer:
    """``command`` serving HTTP on ``port`` (uvicorn, one worker), pinned to one CPU, logs to a file."""

    command: Sequence[str]
    env: Mapping[str, str]
    port: int
    cpu: int = 1
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-bench-http-")))

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, health_path: str = "/healthz", timeout: float = 30) -> HttpServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")} | dict(self.env)
        with open(self.workdir / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                list(self.command), cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        pin(self.process.pid, self.cpu)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.command} exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}{health_path}").status_code < 500:
                        return self
                except httpx.HTTPError:
                    time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.command} did not answer on port {self.port}")

    def stop(self) -> None:
        _stop(self.process, group=True)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def weft_server(redis_url: str, cpu: int = 1, extra_env: Mapping[str, str] | None = None) -> HttpServer:
    """``weft-mcp serve`` as shipped (one worker, default settings) on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {"WEFT_REDIS_URL": redis_url, "PYTHONPATH": str(REPO), **(extra_env or {})}
    return HttpServer(command, env, port, cpu)


def noop_server(cpu: int = 1) -> HttpServer:
    """The SDK floor: a one-tool ``MCPServer`` served by uvicorn with the same settings as ``weft-mcp serve``."""
    port = free_port()
    command = [sys.executable, "-m", "bench.noop_server", str(port)]
    return HttpServer(command, {"PYTHONPATH": str(REPO)}, port, cpu)
