"""Prometheus metrics: tool calls by tool and outcome, call latency, Redis errors, fallback-session calls.

Correct across uvicorn worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``weft-mcp serve``
makes a fresh one for ``--workers`` > 1 unless the operator set one), every worker writes its
samples to files there and ``/metrics`` sums all workers' files with ``MultiProcessCollector``, so
whichever worker answers the scrape reports the whole service. prometheus-client picks its
multi-process mode when it is first imported, so the variable must be set before that.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from service.storage_faults import STORE_CONDITIONS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER_TOOL = "other"  # label for names that are not tools: a client must not grow the label set

TOOL_CALLS = Counter(
    "weft_tool_calls_total",
    "MCP tool calls by tool and outcome: ok, error (an isError result: bad input, no session id, "
    "storage unavailable) or protocol_error (a JSON-RPC error).",
    ["tool", "outcome"],
)
TOOL_SECONDS = Histogram(
    "weft_tool_call_duration_seconds",
    "Time from the tools/call reaching the MCP server to its result, by tool.",
    ["tool"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REDIS_ERRORS = Counter("weft_redis_errors_total", "Cart storage calls that failed, by redis-py error type.", ["error"])
STORAGE_CONDITION = Gauge(
    "weft_cart_storage_condition",
    "1 for the cart store's condition as last seen by any worker (a readiness probe, a /metrics scrape or a "
    "failed tool call), 0 for the others: ok, full (out of memory: writes refused, reads work), "
    "authentication, permission, timeout, unreachable, failed.",
    ["condition"],
    multiprocess_mode="livemostrecent",  # every worker shares one Redis: the latest observation wins
)
FALLBACK_CALLS = Counter(
    "weft_fallback_session_calls_total",
    "Tool calls that sent no conversation id and were filed under the shared fallback cart.",
)


def note_storage_condition(condition: str) -> None:
    """Set the condition gauge: all labels at once, so the newest observation is one consistent set."""
    for name in STORE_CONDITIONS:
        STORAGE_CONDITION.labels(name).set(1 if name == condition else 0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(workers: int) -> str | None:
    """Before uvicorn starts N workers: keep the operator's directory, else make a fresh one.

    One worker needs no directory (its own registry is the whole service); a fresh directory per
    start means counters of a previous run are never summed into this one.
    """
    if os.environ.get(MULTIPROC_ENV):
        os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
        return os.environ[MULTIPROC_ENV]
    if workers <= 1:
        return None
    path = tempfile.mkdtemp(prefix="weft-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)  # the serving parent removes it when it stops
    return path


def mark_worker_dead(pid: int | None = None) -> None:
    """A stopping worker's live gauges leave the sum (counters and histograms stay, as they should)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid or os.getpid())


def render() -> tuple[bytes, str]:
    """The exposition text: all workers' samples in multi-process mode, else this process's."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)


def call_outcome(result: Any) -> str:
    """``ok`` or ``error`` from a tools/call result (a model or a dict, depending on the layer)."""
    if isinstance(result, dict):
        failed = result.get("isError") or result.get("is_error")
    else:
        failed = getattr(result, "is_error", False)
    return "error" if failed else "ok"


class ToolMetrics:
    """SDK server middleware (``MCPServer.middleware``): counts and times every ``tools/call``.

    Middleware rather than a wrapper in each tool, so a new tool is measured without being touched.
    ``tool_names`` bounds the label values; any other name is counted as ``other``.
    """

    def __init__(self, tool_names: Callable[[], Awaitable[Collection[str]]]) -> None:
        self._tool_names = tool_names
        self._known: Collection[str] | None = None

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        if self._known is None:
            self._known = frozenset(await self._tool_names())
        name = (ctx.params or {}).get("name")
        tool = name if isinstance(name, str) and name in self._known else OTHER_TOOL
        started = time.perf_counter()
        outcome = "protocol_error"
        try:
            result = await call_next(ctx)
            outcome = call_outcome(result)
            return result
        finally:
            TOOL_SECONDS.labels(tool).observe(time.perf_counter() - started)
            TOOL_CALLS.labels(tool, outcome).inc()
