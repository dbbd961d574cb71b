"""deploy/redis.conf loads in a real redis-server, and keeps a realistic cart in the compact listpack encoding.

Also measures bytes per cart (``MEMORY USAGE``) with Redis' defaults and with the shipped config,
for README's sizing guidance; the figures are printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from service.carts import CartStore
from service.catalog import load_catalog
from tests.redis_server import RedisProcess, free_port

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]

REDIS_CONF = Path(__file__).resolve().parents[1] / "deploy" / "redis.conf"


def shipped_memory_settings() -> tuple[str, ...]:
    """The encoding and memory lines of deploy/redis.conf, as redis-server flags (paths and AOF stay test-local)."""
    wanted = ("hash-max-listpack-value", "hash-max-listpack-entries", "maxmemory", "maxmemory-policy")
    args: list[str] = []
    for line in REDIS_CONF.read_text().splitlines():
        match = re.match(r"^([a-z-]+)\s+(\S+)", line)
        if match and match.group(1) in wanted:
            args += [f"--{match.group(1)}", match.group(2)]
    return tuple(args)


def fill_cart(url: str, session: str, lines: int) -> str:
    """A cart of ``lines`` real demo-store products (the longest names), written by the service's own script."""
    store = load_catalog(None).stores["demo-market"]
    products = sorted((p for p in store.products if p.is_purchasable), key=lambda p: -len(p.name))[:lines]

    async def run() -> str:
        carts = CartStore.connect(url, key_prefix="size")
        try:
            for product in products:
                await carts.add(session, product.id, 2, product.name, product.price)
            return carts.cart_key(session)
        finally:
            await carts.aclose()

    return asyncio.run(run())


def measure(extra_args: tuple[str, ...]) -> dict[int, tuple[str, int]]:
    server = RedisProcess(extra_args=extra_args).start()
    try:
        figures = {}
        with redis.Redis(port=server.port, decode_responses=True) as client:
            for lines in (1, 3, 10):
                key = fill_cart(server.url, f"cart-{lines}", lines)
                figures[lines] = (client.object("encoding", key), client.memory_usage(key, samples=0))
        return figures
    finally:
        server.stop()


def test_shipped_redis_conf_starts_and_sets_what_it_says(tmp_path: Path) -> None:
    """The real file, as compose mounts it (only bind, port and dir changed for the test)."""
    text = REDIS_CONF.read_text()
    text = re.sub(r"(?m)^bind .*$", "bind 127.0.0.1", text)
    text = re.sub(r"(?m)^dir .*$", f"dir {tmp_path}", text)
    text = re.sub(r"(?m)^port .*$", "port 0", text)
    conf = tmp_path / "redis.conf"
    conf.write_text(text)
    port = free_port()
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(conf), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    pytest.fail(f"redis-server refused deploy/redis.conf:\n{process.stdout.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not answer with deploy/redis.conf")
                time.sleep(0.05)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert int(client.config_get("maxmemory")["maxmemory"]) == 256 * 1024 * 1024
        assert client.config_get("hash-max-listpack-value")["hash-max-listpack-value"] == "256"
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_a_realistic_cart_stays_listpack_under_the_shipped_config() -> None:
    defaults = measure(())
    shipped = measure(shipped_memory_settings())
    for lines in defaults:
        print(f"{lines:>2}-line cart: defaults {defaults[lines][0]} {defaults[lines][1]} B, "
              f"deploy/redis.conf {shipped[lines][0]} {shipped[lines][1]} B")  # fmt: skip
    assert all(encoding == "listpack" for encoding, _ in shipped.values())
    # The longest demo names exceed the default 64-byte listpack value: the default config pays for a hashtable.
    assert defaults[3][0] == "hashtable"
    assert shipped[3][1] < defaults[3][1]
