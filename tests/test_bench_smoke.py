"""The bench's smoke mode runs and prints every figure line (no timing assertions: CI machines vary)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.profile import parse_raw, py_spy, report
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
    assert "p99 ratio" in out and "'openai/session'" in out, out
    # the closing summary: issue 13's figures, each once
    summary = out.split("issue 13 figures of this run:", 1)[1]
    for figure in (
        "add_to_cart: ",
        "view_cart: ",
        "worker RSS (demo store, after (a)):",
        "Redis round trips per cart call: 1.00-1.00",
        "catalog memory: ",
    ):
        assert summary.count(figure) == 1, summary
    # every tool was measured (one row per step of the table) and the figures are numbers
    assert out.count("commands/call") == len(tool_steps("store:i1")), out
    assert "synthetic 2000" in out, out


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the bench starts its own redis-server")
@pytest.mark.skipif(py_spy() is None, reason="py-spy (the test extra) samples the worker")
def test_bench_profile_names_where_the_time_goes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "--smoke"], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for target in ("noop floor (", "add_to_cart (", "view_cart ("):
        assert out.count(target) == 1, out
    assert out.count("busy samples") == 3 and out.count("top 25 functions by own samples") == 3, out
    weft_sections = out.split("add_to_cart (", 1)[1]
    assert weft_sections.count("weft (service/)") == 2, out  # Weft's own code shows in both Weft targets' layers


def test_profile_report_adds_up_collapsed_stacks() -> None:
    text = "\n".join(
        [
            'process 1:"python";main (service/cli.py:1);handle (mcp/server/runner.py:5);write (asyncio/x.py:9) 6',
            "main (service/cli.py:1);handle (mcp/server/runner.py:7) 3",
            "main (service/cli.py:2);parse_line (service/carts.py:3) 1",
            "not a stack line",
        ]
    )
    profile = parse_raw(text)
    assert profile.samples == 10
    assert profile.own == {
        "write (asyncio/x.py)": 6,
        "handle (mcp/server/runner.py)": 3,
        "parse_line (service/carts.py)": 1,
    }
    assert profile.total["main (service/cli.py)"] == 10  # two lines of one function are one function
    assert profile.total["handle (mcp/server/runner.py)"] == 9
    assert profile.layers == {"asyncio": 6, "mcp SDK": 3, "weft (service/)": 1}
    lines = report("t", profile, top=2)
    assert lines[0] == "t: 10 busy samples"
    assert "asyncio 60.0%" in lines[1] and "     60.0%  write (asyncio/x.py)" in lines
