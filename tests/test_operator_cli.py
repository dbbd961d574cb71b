"""``weft-mcp sessions ...`` against a real Redis: count, list, show, purge, purge-idle, --json, confirmation."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import redis

from service.carts import CartStore
from service.cli import main
from service.operator import Progress, parse_age
from service.sessions import session_key

pytestmark = pytest.mark.redis

LONG_ID = "chat-" + "y" * 200  # hashed into its key


@pytest.fixture
def carts(redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """Five carts: chat-0..chat-3 (chat-0 idle for 30 days) and one under a hashed id."""
    monkeypatch.setenv("WEFT_REDIS_URL", redis_url)
    monkeypatch.setenv("WEFT_KEY_PREFIX", key_prefix)
    monkeypatch.chdir("/")  # no stray .env

    async def fill() -> None:
        store = CartStore.connect(redis_url, key_prefix=key_prefix)
        try:
            for index in range(4):
                for line in range(index + 1):
                    await store.add(session_key(f"chat-{index}"), f"demo:i{line}", 2, "שוקולד 70%", Decimal("24.40"))
            await store.add(session_key(LONG_ID), "demo:i9", 1, "Oats", Decimal("9.90"))
        finally:
            await store.aclose()

    asyncio.run(fill())
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset(f"{key_prefix}:cart:{{chat-0}}", "_last_accessed", int(time.time()) - 30 * 86400)
    yield client
    for key in client.scan_iter(match=f"{key_prefix}:*"):
        client.delete(key)
    client.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sessions", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_count_and_list(carts, capsys) -> None:
    code, out, _ = run(capsys, "count", "--json")
    assert code == 0 and json.loads(out) == {"carts": 5}
    code, out, _ = run(capsys, "list", "--json", "--limit", "10")
    listed = {row["session_key"]: row for row in json.loads(out)}
    assert set(listed) == {"chat-0", "chat-1", "chat-2", "chat-3", session_key(LONG_ID)}
    assert listed["chat-2"]["lines"] == 3
    assert listed["chat-0"]["idle_seconds"] >= 30 * 86400 - 5
    code, out, _ = run(capsys, "list", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2
    code, out, _ = run(capsys, "list")
    assert "chat-3" in out and "30d" in out


def test_show_finds_hashed_ids_and_does_not_touch_the_cart(carts, capsys, key_prefix) -> None:
    key = f"{key_prefix}:cart:{{chat-0}}"
    stamp = carts.hget(key, "_last_accessed")
    code, out, _ = run(capsys, "show", "chat-0", "--json")
    detail = json.loads(out)
    assert code == 0 and detail["exists"] and detail["key"] == key
    assert detail["lines"][0]["name"] == "שוקולד 70%" and detail["lines"][0]["quantity"] == 2
    assert carts.hget(key, "_last_accessed") == stamp  # reading is not an access
    code, out, _ = run(capsys, "show", LONG_ID)
    assert code == 0 and "Oats" in out and session_key(LONG_ID) in out
    code, out, _ = run(capsys, "show", "nobody")
    assert code == 1 and "no cart" in out


def test_purge_confirms_unless_yes(carts, capsys, key_prefix, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # not a terminal: nobody to confirm
    code, _, err = run(capsys, "purge", "chat-1")
    assert code == 1 and "--yes" in err
    assert carts.exists(f"{key_prefix}:cart:{{chat-1}}")
    code, out, _ = run(capsys, "purge", "chat-1", "--yes", "--json")
    assert code == 0 and json.loads(out)["deleted"] is True
    assert not carts.exists(f"{key_prefix}:cart:{{chat-1}}")
    code, out, _ = run(capsys, "purge", LONG_ID, "-y")
    assert code == 0 and not carts.exists(f"{key_prefix}:cart:{{{session_key(LONG_ID)}}}")


def test_purge_idle_deletes_only_idle_carts(carts, capsys, key_prefix, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    code, out, _ = run(capsys, "purge-idle", "--older-than", "7d", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["idle"] == 1 and json.loads(out)["deleted"] == 0
    code, _, err = run(capsys, "purge-idle", "--older-than", "7d")
    assert code == 1 and "--yes" in err and carts.exists(f"{key_prefix}:cart:{{chat-0}}")
    code, out, err = run(capsys, "purge-idle", "--older-than", "7d", "--yes", "--json")
    report = json.loads(out)
    assert code == 0 and report["deleted"] == 1 and report["scanned"] == 5
    assert "purging: 5 keys scanned, 1 deleted" in err  # progress on stderr
    assert not carts.exists(f"{key_prefix}:cart:{{chat-0}}")
    assert carts.exists(f"{key_prefix}:cart:{{chat-3}}")


def test_needs_redis_url(capsys, monkeypatch) -> None:
    monkeypatch.chdir("/")
    monkeypatch.delenv("WEFT_REDIS_URL", raising=False)
    code, out, err = run(capsys, "count")
    assert code == 2 and "WEFT_REDIS_URL" in err and len(err.strip().splitlines()) == 1


def test_bad_age_is_a_usage_error(carts, capsys) -> None:
    code, _, err = run(capsys, "purge-idle", "--older-than", "soon")
    assert code == 2 and "7d" in err


def test_parse_age_and_progress_lines() -> None:
    assert parse_age("7d") == 604800 and parse_age("12h") == 43200 and parse_age("90") == 90
    with pytest.raises(ValueError):
        parse_age("0d")

    class Sink(list):
        def write(self, text: str) -> None:
            self.append(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    sink = Sink()
    progress = Progress("purging", stream=sink, every=1000)  # type: ignore[arg-type]
    for scanned in range(0, 3500, 500):
        progress.update(scanned, scanned // 10)
    progress.update(3500, 350, final=True)
    assert [line.split(" keys")[0] for line in sink] == [
        "purging: 1000", "purging: 2000", "purging: 3000", "purging: 3500"
    ]  # fmt: skip
