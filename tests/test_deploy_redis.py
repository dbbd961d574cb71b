"""deploy/redis.conf loads in a real redis-server, and keeps a realistic cart in the compact listpack encoding.

Also measures bytes per cart (``MEMORY USAGE``) with Redis' defaults and with the shipped config,
for README's sizing guidance; the figures are printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from harness.processes import SHIPPED_REDIS_CONF, RedisProcess, as_flags, shipped_redis_settings
from service.carts import CartStore
from service.catalog import load_catalog

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]


def shipped_memory_settings() -> tuple[str, ...]:
    """The encoding and memory lines of deploy/redis.conf, as redis-server flags (paths and AOF stay test-local)."""
    wanted = ("hash-max-listpack-value", "hash-max-listpack-entries", "maxmemory", "maxmemory-policy")
    return as_flags({name: value for name, value in shipped_redis_settings().items() if name in wanted})


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
    with RedisProcess(extra_args=extra_args) as server, server.client() as client:
        figures = {}
        for lines in (1, 3, 10):
            key = fill_cart(server.url, f"cart-{lines}", lines)
            figures[lines] = (client.object("encoding", key), client.memory_usage(key, samples=0))
        return figures


def test_shipped_redis_conf_starts_and_sets_what_it_says(tmp_path: Path) -> None:
    """The real file, as compose mounts it (only bind, port and dir changed for the test: the folder in the
    file, since redis-server enters it while reading; bind and port on the command line)."""
    conf = tmp_path / "redis.conf"
    conf.write_text(re.sub(r"(?m)^dir .*$", f"dir {tmp_path}", SHIPPED_REDIS_CONF.read_text()))
    with RedisProcess(config_file=conf, workdir=tmp_path) as server, server.client() as client:
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert int(client.config_get("maxmemory")["maxmemory"]) == 256 * 1024 * 1024
        assert client.config_get("hash-max-listpack-value")["hash-max-listpack-value"] == "256"


def test_a_realistic_cart_stays_listpack_under_the_shipped_config() -> None:
    defaults = measure(())
    shipped = measure(shipped_memory_settings())
    for lines in defaults:
        print(
            f"{lines:>2}-line cart: defaults {defaults[lines][0]} {defaults[lines][1]} B, "
            f"deploy/redis.conf {shipped[lines][0]} {shipped[lines][1]} B"
        )
    assert all(encoding == "listpack" for encoding, _ in shipped.values())
    # The longest demo names exceed the default 64-byte listpack value: the default config pays for a hashtable.
    assert defaults[3][0] == "hashtable"
    assert shipped[3][1] < defaults[3][1]
