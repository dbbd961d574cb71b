"""``python -m bench`` (full run, minutes) or ``python -m bench --smoke`` (seconds; CI checks it runs).

Prints one table per measurement, each figure next to its goal. Absolute times drift on shared
machines, so (a) compares Weft with the bare SDK in the same run, in alternating rounds, and
reports medians and ratios.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

SECTIONS = "abcdefgh"


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float
    concurrency: int
    calls: int
    carts: int
    count_sizes: tuple[int, ...]
    synthetic: int
    repeats: int
    memory_sizes: tuple[int, ...]
    hostile_size: int


FULL = Plan(
    rounds=5,
    seconds=5.0,
    concurrency=8,
    calls=200,
    carts=100_000,
    count_sizes=(100_000, 1_000_000),
    synthetic=100_000,
    repeats=20,
    memory_sizes=(100_000, 183_700),
    hostile_size=100_000,
)
SMOKE = Plan(
    rounds=1,
    seconds=0.5,
    concurrency=8,
    calls=5,
    carts=2_000,
    count_sizes=(10_000,),
    synthetic=2_000,
    repeats=3,
    memory_sizes=(2_000,),
    hostile_size=2_000,
)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo", encoding="utf-8")
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return (
        f"{os.cpu_count()} CPU(s) {cpu}; Python {platform.python_version()}; "
        f"redis-server {redis_version.removeprefix('v=')}; {platform.system()} {platform.release()}"
    )


# The figures issue 13 asks for in one run, gathered by the sections as they go and printed last.
SUMMARY: list[str] = []
RATE_GOAL = 0.85  # Weft's calls/s at least this share of the floor's
P99_GOAL = 1.2  # Weft's p99 at most this multiple of the floor's


def section_a(plan: Plan) -> None:
    from bench.load import SESSION_META_KEY
    from bench.throughput import measure

    print(
        f"\n(a) tool calls through one worker (default settings: INFO log line per call, /metrics on) vs the bare "
        f"SDK floor, concurrency {plan.concurrency}, _meta {SESSION_META_KEY!r}, {plan.rounds} alternating round(s) "
        f"of {plan.seconds:g} s, both servers pinned to one CPU (medians over rounds)"
    )
    measured = measure(plan.rounds, plan.seconds, plan.concurrency)
    results = measured.targets
    floor = results[0]
    print(
        f"{'target':<14} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'p99 ratio':>9} {'errors':>6}  goal"
    )
    for r in results:
        ratio, p99_ratio = r.rate / floor.rate, r.p(0.99) / floor.p(0.99)
        goal = ""
        if r.target != "noop floor":
            goal = (
                f"ratio >= {RATE_GOAL}: {verdict(ratio >= RATE_GOAL)}; "
                f"p99 ratio <= {P99_GOAL}: {verdict(p99_ratio <= P99_GOAL)}"
            )
            SUMMARY.append(
                f"{r.target}: {ratio:.2f} of the floor's calls/s ({r.rate:.0f} vs {floor.rate:.0f}), p99 "
                f"{p99_ratio:.2f} of the floor's ({r.p(0.99) * 1000:.1f} vs {floor.p(0.99) * 1000:.1f} ms)  {goal}"
            )
        print(
            f"{r.target:<14} {r.rate:>9.0f} {r.p(0.5) * 1000:>8.2f} {r.p(0.99) * 1000:>8.2f} "
            f"{ratio:>6.2f} {p99_ratio:>9.2f} {r.errors:>6}  {goal}"
        )
    print(f"RSS after the rounds: Weft worker {measured.weft_rss_mib:.0f} MiB, floor {measured.floor_rss_mib:.0f} MiB")
    SUMMARY.append(f"worker RSS (demo store, after (a)): {measured.weft_rss_mib:.0f} MiB")


def section_b(plan: Plan) -> None:
    from bench.redis_cost import commands_per_call

    print(
        f"\n(b) Redis commands sent per tool call (MONITOR; commands run inside scripts not counted), "
        f"{plan.calls} calls each"
    )
    # The goal is one round trip per cart call; search and list_stores send none; share and claim are several
    # steps on different keys (docs/operating.md).
    cart_calls: list[float] = []
    for label, per_call in commands_per_call(plan.calls).items():
        goal = 0 if label.startswith(("list_stores", "search_products")) else 1
        if label.startswith(("share_cart", "claim_cart")):
            print(f"{label:<32} {per_call:>5.2f} commands/call  (several keys: see docs/operating.md)")
        else:
            print(f"{label:<32} {per_call:>5.2f} commands/call  goal {goal}: {verdict(per_call == goal)}")
            if goal == 1:
                cart_calls.append(per_call)
    if cart_calls:
        SUMMARY.append(
            f"Redis round trips per cart call: {min(cart_calls):.2f}-{max(cart_calls):.2f} over {len(cart_calls)} "
            f"kinds of call  goal 1: {verdict(all(c == 1 for c in cart_calls))}"
        )


def section_c(plan: Plan) -> None:
    from bench.redis_cost import bytes_per_cart, longest_line_value, product_names

    print(
        f"\n(c) bytes per 3-line cart in Redis, {plan.carts} carts (MEMORY USAGE median of 1000 sampled; "
        "used_memory growth / carts)"
    )
    print(f"longest line value of any product: {longest_line_value(product_names())} bytes")
    for shipped in (True, False):
        r = bytes_per_cart(plan.carts, shipped)
        goal = f"goal <= 500 B: {verdict(r.memory_usage_median <= 500)}" if shipped else "(no goal)"
        print(
            f"{r.config}: MEMORY USAGE {r.memory_usage_median:.0f} B, used_memory growth "
            f"{r.used_memory_per_cart:.0f} B/cart, encodings {r.encodings}  {goal}"
        )


def section_d(plan: Plan) -> None:
    from bench.redis_cost import count_under_load

    print("\n(d) debug_session's count (CartStore.count_carts: SCAN MATCH COUNT 1000), other client's HGET latency")
    print(
        f"{'keys':>9} {'counted':>9} {'seconds':>8} {'SCANs':>6} {'other p99 ms':>13} {'max ms':>7} "
        f"{'idle p99 ms':>11}  goal"
    )
    for r in count_under_load(list(plan.count_sizes)):
        goal = ""
        if r.keys >= 1_000_000:
            goal = f"<= 2 s: {verdict(r.seconds <= 2)}; p99 <= 3 ms: {verdict(r.probe_p99_ms <= 3)}"
        print(
            f"{r.keys:>9} {r.counted:>9} {r.seconds:>8.2f} {r.scan_calls:>6} {r.probe_p99_ms:>13.2f} "
            f"{r.probe_max_ms:>7.2f} {r.probe_idle_p99_ms:>11.2f}  {goal}"
        )


def section_e(plan: Plan) -> None:
    from bench.search import run

    print(
        f"\n(e) search_products (Catalog.search, page 1 of 12), {plan.repeats} runs per query; cold = first run "
        "of each query with the index's word cache empty"
    )
    print(
        f"{'catalog':<26} {'products':>8} {'queries':>7} {'median ms':>9} {'p99 ms':>7} {'worst query ms':>14} "
        f"{'cold median':>11} {'cold worst':>10}  goal"
    )
    results, hostile = run(plan.synthetic, plan.repeats)
    for r in results:
        limit = 1.0 if r.catalog.startswith("real") else 20.0
        goal = f"<= {limit:g} ms: {verdict(r.median_ms <= limit)}" if r.products >= 500 else ""
        print(
            f"{r.catalog:<26} {r.products:>8} {r.queries:>7} {r.median_ms:>9.3f} {r.p99_ms:>7.3f} "
            f"{r.worst_ms:>14.3f} {r.cold_median_ms:>11.3f} {r.cold_worst_ms:>10.3f}  {goal}"
        )

    print(
        f"hostile queries at {hostile.products} products: worst {hostile.worst_ms:.1f} ms "
        f"(query {hostile.worst_query[:40]!r}...), first run with the word cache empty "
        f"{hostile.cold_worst_ms:.1f} ms"
    )


def section_f(plan: Plan) -> None:
    from bench.serving import run_memory

    print(
        "\n(f) memory of a served synthetic catalog: RSS (ps) of the supervisor and the largest worker, after "
        "loading; 'demo' = the same server with the bundled demo store"
    )
    print(
        f"{'products':>8} {'file MiB':>8} {'workers':>7} {'supervisor MiB':>14} {'worker MiB':>10} "
        f"{'demo worker MiB':>15} {'KiB/product':>11}"
    )
    for r in run_memory(plan.memory_sizes):
        per_product = (r.worker_mib - r.empty_worker_mib) * 1024 / r.products
        print(
            f"{r.products:>8} {r.file_mib:>8.1f} {r.workers:>7} {r.supervisor_mib:>14.0f} {r.worker_mib:>10.0f} "
            f"{r.empty_worker_mib:>15.0f} {per_product:>11.2f}"
        )
        if r.workers == 1:
            SUMMARY.append(
                f"catalog memory: {per_product:.2f} KiB per product ({r.products} products: worker RSS "
                f"{r.worker_mib:.0f} MiB, {r.empty_worker_mib:.0f} MiB with the demo store)"
            )


def section_g(plan: Plan) -> None:
    from bench.serving import run_health

    print(
        f"\n(g) GET /healthz every 10 ms while hostile search_products calls run (each shape on its own), one "
        f"worker, synthetic {plan.hostile_size} products"
    )
    for r in run_health(plan.hostile_size, 8):
        print(
            f"{r.shape}: {r.hostile} calls ({r.searches_ok} HTTP 200) in {r.searches_seconds:.2f} s; /healthz "
            f"median {r.healthz_median_ms:.1f} ms, p99 {r.healthz_p99_ms:.1f} ms, max {r.healthz_max_ms:.1f} ms "
            f"(idle max {r.idle_max_ms:.1f} ms)"
        )


def section_h(plan: Plan) -> None:
    from bench.tool_list import BYTES_PER_TOKEN, run_tool_list

    r = run_tool_list()
    print(f"\n(h) tools/list: what every assistant reads; estimated tokens = bytes/{BYTES_PER_TOKEN}")
    print(
        f"{r.tools} tools: {r.total_bytes} bytes, ~{r.tokens} tokens (outputSchemas {r.output_schema_bytes} bytes, "
        f"widget _meta {r.widget_meta_bytes} bytes); "
        f"instructions {r.instructions_bytes} bytes; goal <= 6000 tokens: {verdict(r.tokens <= 6000)}"
    )


def profile_a(plan: Plan) -> int:
    from bench.profile import report
    from bench.throughput import profile

    seconds = max(2.0, plan.seconds)
    print(f"Weft bench --profile, {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine()}")
    print(f"py-spy samples each server during {seconds:g} s of bench (a) load, concurrency {plan.concurrency}")
    for title, found in profile(seconds, plan.concurrency):
        print()
        print("\n".join(report(title, found)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run that checks the bench works")
    parser.add_argument("--only", default=SECTIONS, help="sections to run, e.g. 'ae' (default: all)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the sections: py-spy samples the served worker during one round of each target of (a) "
        "and prints where its CPU goes",
    )
    args = parser.parse_args()
    if args.profile:
        return profile_a(SMOKE if args.smoke else FULL)
    if shutil.which("redis-server") is None and set(args.only) & set("abcd"):
        print("bench: redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    plan = SMOKE if args.smoke else FULL
    started = time.time()
    print(f"Weft bench ({'smoke' if args.smoke else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"machine: {machine()}")
    for section in SECTIONS:
        if section in args.only:
            globals()[f"section_{section}"](plan)
            sys.stdout.flush()
    if SUMMARY:
        print("\nissue 13 figures of this run:")
        for line in SUMMARY:
            print(f"  {line}")
    print(f"\nbench finished in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
