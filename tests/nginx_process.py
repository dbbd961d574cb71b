"""Run the repo's deploy/nginx.conf in a real nginx on loopback, with the upstreams a test gives it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.redis_server import free_port

NGINX_CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def render(upstreams: Sequence[str], port: int, prefix: Path) -> str:
    """deploy/nginx.conf with its upstream servers, listen port and log/temp paths swapped for loopback ones.

    Everything else (keepalive, retries, body limit, GET /mcp, health path, forwarded headers)
    is the shipped file, so the test runs what compose deploys.
    """
    text = NGINX_CONF.read_text()
    servers = "".join(f"        server {address} max_fails=3 fail_timeout=10s;\n" for address in upstreams)
    text, count = re.subn(r"(?m)^\s*server weft\d+:8000[^;]*;\n", "", text)
    assert count >= 2, "deploy/nginx.conf should list the compose worker hosts"
    text = text.replace("    upstream weft {\n", "    upstream weft {\n" + servers, 1)
    text, count = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    assert count == 1
    text = text.replace("access_log /dev/stdout weft;", f"access_log {prefix / 'access.log'} weft;")
    temp_paths = "".join(
        f"    {name}_temp_path {prefix / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temp_paths, 1)


@dataclass
class NginxProcess:
    upstreams: Sequence[str]
    port: int = field(default_factory=free_port)
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-nginx-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def command(self, *extra: str) -> list[str]:
        conf = self.prefix / "nginx.conf"
        conf.write_text(render(self.upstreams, self.port, self.prefix))
        return [nginx_binary() or "nginx", "-p", str(self.prefix), "-c", str(conf),
                "-g", f"daemon off; pid {self.prefix / 'nginx.pid'};", *extra]  # fmt: skip

    def start(self, timeout: float = 10.0) -> NginxProcess:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.url}/lb-health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("nginx did not answer /lb-health")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # fast shutdown
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> NginxProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
