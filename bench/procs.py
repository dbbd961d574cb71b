"""The bench's servers, from ``harness.processes``: a private redis-server, ``weft-mcp serve``, the SDK floor.

Every process is pinned to a CPU where the machine has two or more, so the server under test
and the load generator never fight for one core; each one's folder goes when it stops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from harness.processes import REPO, HttpProcess, RedisProcess, ServeProcess, as_flags, shipped_redis_settings

# What deploy/redis.conf must carry for cart lines to stay listpack-encoded (see BENCHMARKS.md):
# the longest real line value is 180 bytes; a cart holds at most 100 lines + _last_accessed.
LISTPACK_ARGS = ("--hash-max-listpack-value", "256", "--hash-max-listpack-entries", "128")


def unpin(pid: int = 0) -> None:
    usable = set(os.sched_getaffinity(0))
    os.sched_setaffinity(pid, set(range(os.cpu_count() or 1)) & usable or usable)


def shipped_encoding_flags() -> tuple[str, ...]:
    """The ``*-max-listpack-*`` / ``*-max-ziplist-*`` lines of deploy/redis.conf, as command-line flags."""
    settings = shipped_redis_settings()
    return as_flags({n: v for n, v in settings.items() if "-max-listpack-" in n or "-max-ziplist-" in n})


def redis_config(shipped: bool) -> tuple[tuple[str, ...], str]:
    """The flags of the bench's Redis and where they come from, for the report.

    Loopback, no persistence, no memory cap: of the shipped file only the encoding settings apply
    (its bind, dir, AOF and maxmemory are for a deployment, not a bench).
    """
    if not shipped:
        return (), "Redis defaults"
    flags = shipped_encoding_flags()
    source = "deploy/redis.conf" if flags else "listpack settings on the command line"
    flags = flags or LISTPACK_ARGS
    return flags, f"{source} ({' '.join(flags)})"


def bench_redis(shipped: bool = True, cpu: int = 0) -> RedisProcess:
    """A private ``redis-server``; ``shipped=True`` with deploy/redis.conf's encoding settings."""
    flags, _ = redis_config(shipped)
    return RedisProcess(extra_args=flags, cpu=cpu, keep_files=False)


def weft_server(
    redis_url: str, cpu: int = 1, extra_env: Mapping[str, str] | None = None, startup_timeout: float = 30
) -> ServeProcess:
    """``weft-mcp serve`` as shipped (one worker, default settings) on a free port."""
    env = {"WEFT_REDIS_URL": redis_url, "PYTHONPATH": str(REPO), **(extra_env or {})}
    return ServeProcess(env=env, cpu=cpu, keep_files=False, startup_timeout=startup_timeout)


@dataclass(kw_only=True)
class NoopServer(HttpProcess):
    """The SDK floor: a one-tool ``MCPServer`` served by uvicorn with the same settings as ``weft-mcp serve``."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.noop_server", str(self.port)]


def noop_server(cpu: int = 1) -> NoopServer:
    return NoopServer(env={"PYTHONPATH": str(REPO)}, cpu=cpu, keep_files=False, startup_timeout=30)
