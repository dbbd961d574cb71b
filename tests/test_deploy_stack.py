"""The compose stack, run for real (issue 14): docker-compose.yml built and started under rootful podman.

Images: deploy/build-offline-images (Debian-only bases, kept by name, so a second run reuses them; the
service's wheels in deploy/wheels), then ``docker-compose up -d --build``. Every call goes through
nginx on :8080. Everything the stack made (containers, volume, network) is removed at the end, also
when a test fails. Skipped, with the reason, where podman cannot run;
``WEFT_TEST_REQUIRE_STACK=1`` (.ci/run) makes that a failure. The podman service is the session's
(``podman_service``), shared with the containers Redis backend, and stopped at the end of the session.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jsonrpc import JSON_HEADERS, AddCall, call_tool, tool_call_message
from tests.podman_engine import HealthTicker, PodmanService, why_no_engine

pytestmark = [pytest.mark.e2e, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "weftstack"
BASE = "http://127.0.0.1:8080"
MCP = f"{BASE}/mcp"
WORKER_ADDRESSES = {"weft1": "172.28.255.11", "weft2": "172.28.255.12"}


@dataclass
class Stack:
    engine: PodmanService
    env_file: Path
    figures: dict[str, Any] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", PROJECT, "--env-file", str(self.env_file), *args]
        result = subprocess.run(command, cwd=ROOT, env=self.engine.env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{' '.join(args)}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def state(self, service: str, template: str) -> str:
        return self.engine.podman("inspect", "--format", template, self.container(service)).stdout.strip()

    def wait_healthy(self, service: str, timeout: float = 60.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.state(service, "{{.State.Health.Status}}") == "healthy":
                return time.monotonic() - start
            time.sleep(0.25)
        raise AssertionError(f"{service} not healthy after {timeout} s")


def wait_in_rotation(stack: Stack, service: str, timeout: float = 40.0) -> float:
    """Seconds until nginx sends calls to ``service`` again: after failures it skips a worker for
    ``fail_timeout`` (10 s), also when the worker is healthy sooner."""
    address = f"upstream={WORKER_ADDRESSES[service]}:8000 upstream_status=200"
    seen = stack.compose("logs", "--no-color", "nginx").stdout.count(address)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        adds([("stack-rotation", product_ids(1)[0])] * 4, tasks=2)
        if stack.compose("logs", "--no-color", "nginx").stdout.count(address) > seen:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"nginx sent nothing to {service} for {timeout} s")


def wait_ready(timeout: float) -> float:
    """Seconds until GET /readyz through nginx answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(f"{BASE}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/readyz through nginx not 200 after {timeout} s")


def report(stack: Stack, name: str, value: Any) -> None:
    stack.figures[name] = value
    print(f"[stack] {name}: {value}")


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    reason = why_no_engine()
    if reason:
        if os.environ.get("WEFT_TEST_REQUIRE_STACK") == "1":
            pytest.fail(f"WEFT_TEST_REQUIRE_STACK=1 but the stack cannot run: {reason}")
        pytest.skip(reason)
    # The session's podman service (tests/conftest.py): the containers Redis backend uses the same one, so
    # the offline images it built are found here, and no two services work on the storage at once.
    engine: PodmanService = request.getfixturevalue("podman_service")
    with tempfile.TemporaryDirectory(prefix="weft-stack-") as folder:
        stack = Stack(engine, Path(folder) / "stack.env")
        ticker = HealthTicker(engine, PROJECT).start()
        try:
            start = time.monotonic()
            images = subprocess.run(
                [str(ROOT / "deploy" / "build-offline-images"), "--wheels"],
                env={**engine.env, "ENGINE": "podman"},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert images.returncode == 0, images.stderr[-3000:]
            report(stack, "offline images + wheels (s)", round(time.monotonic() - start, 1))
            lines = [line for line in images.stdout.splitlines() if line and not line.startswith("#")]
            assert {line.split("=", 1)[0] for line in lines} == {"BASE_IMAGE", "REDIS_IMAGE", "NGINX_IMAGE"}
            stack.env_file.write_text("\n".join(lines) + "\n")
            stack.compose("down", "-v", "--remove-orphans", "-t", "5")  # leftovers of an interrupted run
            start = time.monotonic()
            stack.compose("up", "-d", "--build", timeout=400)
            up = time.monotonic() - start
            ready = wait_ready(120)
            report(stack, "up -d --build (s)", round(up, 1))
            report(stack, "then /readyz 200 through nginx (s)", round(ready, 1))
            report(stack, "then nginx healthy (s)", round(stack.wait_healthy("nginx"), 1))
            yield stack
        finally:
            try:
                logs = subprocess.run(
                    ["docker-compose", "-p", PROJECT, "--env-file", str(stack.env_file), "logs", "--no-color"],
                    cwd=ROOT,
                    env=engine.env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                (Path(tempfile.gettempdir()) / "weft-stack-last.log").write_text(logs.stdout)
                subprocess.run(
                    ["docker-compose", "-p", PROJECT, "--env-file", str(stack.env_file), "down", "-v"]
                    + ["--remove-orphans", "-t", "5"],
                    cwd=ROOT,
                    env=engine.env,
                    capture_output=True,
                    timeout=120,
                )
                engine.podman("image", "prune", "-f", check=False)  # layers of earlier builds of weft-mcp
            finally:
                ticker.stop()


def product_ids(count: int) -> list[str]:
    result = call_tool(MCP, "search_products", {"search": "", "page_size": 50}, session="stack-catalog")
    ids = [p["id"] for p in result["structuredContent"]["products"] if p["is_purchasable"]]
    assert len(ids) >= count
    return ids[:count]


def quantities(session: str) -> Counter[str]:
    cart = call_tool(MCP, "view_cart", {}, session=session)
    assert not cart.get("isError"), cart
    return Counter({item["id"]: item["quantity"] for item in cart["structuredContent"]["items"]})


def added(calls: list[AddCall], outcomes: list[bool | None], value: bool | None) -> Counter[tuple[str, str]]:
    return Counter(call for call, outcome in zip(calls, outcomes, strict=True) if outcome is value)


def check_cart_counts(calls: list[AddCall], outcomes: list[bool | None]) -> None:
    """Every acknowledged add is in its cart, once; an unanswered one, or one refused with "storage
    unavailable" (these adds are all valid), may or may not be."""
    acknowledged = added(calls, outcomes, True)
    uncertain = added(calls, outcomes, None) + added(calls, outcomes, False)
    for session in {s for s, _ in calls}:
        held = quantities(session)
        for product in {p for s, p in calls if s == session}:
            low = acknowledged[(session, product)]
            assert low <= held[product] <= low + uncertain[(session, product)], (session, product, held[product])


async def _adds(calls: list[AddCall], tasks: int, problems: Counter[str], unsaved: list[AddCall]) -> list[bool | None]:
    """Like tests.jsonrpc.add_calls through nginx, counting what each failed call said (for the report)."""
    outcomes: list[bool | None] = [None] * len(calls)
    queue = list(enumerate(calls))[::-1]
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def task() -> None:
            while queue:
                index, (session, product) = queue.pop()
                message = tool_call_message("add_to_cart", {"product_id": product}, meta={"sessionId": session})
                try:
                    response = await client.post(MCP, json=message, headers=JSON_HEADERS)
                except httpx.HTTPError as error:
                    problems[type(error).__name__] += 1
                    continue
                if response.status_code != 200:
                    problems[f"HTTP {response.status_code}"] += 1
                    continue
                result = response.json()["result"]
                outcomes[index] = not result.get("isError", False)
                if result.get("isError"):
                    problems[result["content"][0]["text"][:80]] += 1
                    if "nothing was saved" in result["content"][0]["text"]:
                        unsaved.append(calls[index])

        await asyncio.gather(*(task() for _ in range(tasks)))
    return outcomes


def adds(
    calls: list[AddCall], tasks: int, problems: Counter[str] | None = None, unsaved: list[AddCall] | None = None
) -> list[bool | None]:
    """``add_to_cart`` quantity 1 for each call, ``tasks`` at once; refusals counted in ``problems``, and
    those that say nothing was saved listed in ``unsaved`` (a client retries those)."""
    return asyncio.run(
        _adds(calls, tasks, Counter() if problems is None else problems, [] if unsaved is None else unsaved)
    )


def load_in_background(
    calls: list[AddCall], tasks: int, problems: Counter[str]
) -> tuple[threading.Thread, list[list[bool | None]]]:
    box: list[list[bool | None]] = []
    thread = threading.Thread(target=lambda: box.append(adds(calls, tasks, problems)))
    thread.start()
    return thread, box


def test_ready_through_nginx_and_no_ca_bundle_in_any_image(stack: Stack) -> None:
    response = httpx.get(f"{BASE}/readyz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ready"
    assert httpx.get(f"{BASE}/lb-health", timeout=5).text == "ok\n"
    for service in ("redis", "weft1", "weft2", "nginx"):
        assert stack.state(service, "{{.State.Health.Status}}") == "healthy"
    offline = [line.split("=", 1)[1] for line in stack.env_file.read_text().split()]
    for image in ["weft-mcp:latest", *offline]:
        found = stack.engine.podman(
            "run",
            "--rm",
            "--user",
            "root",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "ls -d /run/secrets/* /tmp/wheels/* 2>/dev/null; env | grep -i -e _cert -e ca_bundle",
            check=False,
        ).stdout
        assert found.strip() == "", f"{image} holds build-time files: {found}"
    sizes = stack.engine.podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    report(stack, "image sizes", "; ".join(line for line in sizes.splitlines() if "weft" in line))


def test_conversations_at_once_get_exact_counts(stack: Stack) -> None:
    products = product_ids(3)
    sessions = [f"stack-chat-{n}" for n in range(8)]
    calls = [(s, p) for _ in range(10) for s in sessions for p in products]  # 240 adds, 10 per cart line
    start = time.monotonic()
    problems: Counter[str] = Counter()
    unsaved: list[AddCall] = []
    outcomes = adds(calls, tasks=12, problems=problems, unsaved=unsaved)
    report(stack, "240 adds from 8 conversations, 12 at once (s)", round(time.monotonic() - start, 2))
    # "Cart storage unavailable, so nothing was saved; retry": what a client does. Seen here right after
    # `up`, when a worker process opens its first Redis connections (a late DNS answer from podman).
    retried = len(unsaved)
    for _ in range(3):
        again, unsaved = unsaved, []
        outcomes += adds(again, tasks=4, problems=problems, unsaved=unsaved)
    report(stack, "refusals ('nothing was saved') retried / what the refusals said", (retried, dict(problems)))
    assert outcomes.count(None) == 0
    assert outcomes.count(True) == len(calls), "every add acknowledged, once, after retries of unsaved ones"
    assert all("nothing was saved" in text for text in problems), problems
    for session in sessions:
        assert quantities(session) == Counter({p: 10 for p in products})
    upstreams = stack.compose("logs", "--no-color", "nginx").stdout
    served = {name for name, address in WORKER_ADDRESSES.items() if f"upstream={address}:8000" in upstreams}
    assert served == {"weft1", "weft2"}, "nginx spread the calls over both workers"


def test_sigterm_drains_one_worker_under_load(stack: Stack) -> None:
    products = product_ids(2)
    calls = [(f"stack-drain-{n % 12}", products[n % 2]) for n in range(600)]
    problems: Counter[str] = Counter()
    thread, box = load_in_background(calls, tasks=6, problems=problems)
    time.sleep(1.0)
    stopper = threading.Thread(target=lambda: stack.compose("stop", "-t", "20", "weft2"))
    start = time.monotonic()
    stopper.start()
    draining = 0
    while stopper.is_alive():  # the stopping worker's own /readyz (its compose address): 503 "draining"
        try:
            probe = httpx.get(f"http://{WORKER_ADDRESSES['weft2']}:8000/readyz", timeout=1)
            draining += probe.status_code == 503 and probe.json()["status"] == "draining"
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stopper.join()
    stopped = time.monotonic() - start
    thread.join(timeout=120)
    outcomes = box[0]
    exit_code = stack.state("weft2", "{{.State.ExitCode}}")
    logs = stack.compose("logs", "--no-color", "weft2").stdout
    report(stack, "SIGTERM stop of weft2 (s) / draining probes / exit code", (round(stopped, 1), draining, exit_code))
    report(
        stack,
        "drain load: acknowledged / refused / unanswered",
        (outcomes.count(True), outcomes.count(False), outcomes.count(None)),
    )
    report(stack, "drain load: what the failed calls got", dict(problems))
    assert draining >= 1, "the stopping worker's /readyz said draining"
    assert exit_code == "0"
    assert "Cart storage closed" in logs
    assert outcomes.count(False) == 0
    check_cart_counts(calls, outcomes)
    after = adds([("stack-drain-after", products[0])] * 20, tasks=4)
    assert after == [True] * 20, "calls go on through weft1"
    stack.compose("start", "weft2")
    report(stack, "weft2 healthy again after start (s)", round(stack.wait_healthy("weft2"), 1))
    report(stack, "then in nginx's rotation again (s)", round(wait_in_rotation(stack, "weft2"), 1))


def test_kill_one_worker_under_load(stack: Stack) -> None:
    products = product_ids(2)
    calls = [(f"stack-kill-{n % 12}", products[n % 2]) for n in range(600)]
    problems: Counter[str] = Counter()
    thread, box = load_in_background(calls, tasks=6, problems=problems)
    time.sleep(1.0)
    stack.engine.podman("kill", "--signal", "KILL", stack.container("weft1"))
    killed_at = time.monotonic()
    thread.join(timeout=120)
    outcomes = box[0]
    report(
        stack,
        "kill load: acknowledged / refused / unanswered",
        (outcomes.count(True), outcomes.count(False), outcomes.count(None)),
    )
    report(stack, "kill load: what the failed calls got", dict(problems))
    assert outcomes.count(False) == 0
    # Only calls that were in flight on weft1 may go unanswered (nginx never sends a POST twice).
    assert outcomes.count(None) <= 6, problems
    check_cart_counts(calls, outcomes)
    after = adds([("stack-kill-after", products[0])] * 20, tasks=4)
    assert after == [True] * 20, "calls go on through weft2"
    assert quantities("stack-kill-after")[products[0]] == 20
    running = stack.state("weft1", "{{.State.Running}}")
    report(
        stack, "weft1 running again by its restart policy, after (s)", (running, round(time.monotonic() - killed_at, 1))
    )
    if running != "true":
        stack.compose("start", "weft1")
    report(stack, "weft1 healthy again (s)", round(stack.wait_healthy("weft1"), 1))
    report(stack, "then in nginx's rotation again (s)", round(wait_in_rotation(stack, "weft1"), 1))


def test_redis_restart_keeps_carts(stack: Stack) -> None:
    session = "stack-redis-restart"
    products = product_ids(2)
    outcomes = adds([(session, products[0])] * 5 + [(session, products[1])] * 3, tasks=4)
    assert outcomes.count(True) == 8
    before = quantities(session)
    time.sleep(1.2)  # appendfsync everysec: what was acknowledged more than 1 s ago is on disk
    start = time.monotonic()
    stack.compose("restart", "-t", "10", "redis")
    restarted = time.monotonic() - start
    ready = wait_ready(60)
    report(stack, "redis restart (s) / then /readyz 200 (s)", (round(restarted, 1), round(ready, 1)))
    assert quantities(session) == before == Counter({products[0]: 5, products[1]: 3})
    # Connections the workers pooled before the restart are dead: a call that meets one is answered
    # "cart storage unavailable, retry" (the service never repeats a cart script). Batches of 96 adds
    # until one is clean; every batch's carts must hold every acknowledged add.
    refused: list[int] = []
    problems: Counter[str] = Counter()
    for batch in range(8):
        calls = [(f"stack-after-redis-{batch}-{n % 4}", products[n % 2]) for n in range(96)]
        outcomes = adds(calls, tasks=12, problems=problems)
        check_cart_counts(calls, outcomes)
        assert outcomes.count(None) == 0
        refused.append(outcomes.count(False))
        if refused[-1] == 0:
            break
    report(stack, "refused adds per batch of 96 after the redis restart", refused)
    report(stack, "what they got", dict(problems))
    assert refused[-1] == 0, "a batch with no stale connection left"
