"""Run the repo's deploy/nginx.conf in a real nginx on loopback, with the upstreams a test gives it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.processes import HttpProcess

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


@dataclass(kw_only=True)
class NginxProcess(HttpProcess):
    """deploy/nginx.conf in a real nginx on 127.0.0.1:``port``, ready once ``/lb-health`` answers."""

    health_path: ClassVar[str] = "/lb-health"
    upstreams: Sequence[str]
    startup_timeout: float = 10.0

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def command(self, *extra: str) -> list[str]:
        conf = self.workdir / "nginx.conf"
        conf.write_text(render(self.upstreams, self.port, self.workdir))
        daemon_off = f"daemon off; pid {self.workdir / 'nginx.pid'};"
        return [nginx_binary() or "nginx", "-p", str(self.workdir), "-c", str(conf), "-g", daemon_off, *extra]
