"""The bench's smoke mode runs and prints every figure line (no timing assertions: CI machines vary)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.redis_cost import tool_steps

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the bench starts its own redis-server")
def test_bench_smoke_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for heading in (
        "(a) tool calls",
        "(b) Redis commands",
        "(c) bytes per 3-line cart",
        "(d) debug_session",
        "(e) search_products",
        "hostile queries at",
        "(f) memory of a served",
        "(g) GET /healthz",
        "(h) tools/list",
        "bench finished",
    ):
        assert heading in out, out
    for row in ("noop floor", "add_to_cart ", "view_cart ", "clear_cart", "MEMORY USAGE", "Redis defaults"):
        assert row in out, out
    # every tool was measured (one row per step of the table) and the figures are numbers
    assert out.count("commands/call") == len(tool_steps("store:i1")), out
    assert "synthetic 2000" in out, out
