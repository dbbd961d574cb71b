"""``weft-mcp sessions ...`` against a real Redis: count, list, show, purge, purge-idle, --json, confirmation."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
import redis

from service.cart_admin import Progress, parse_age
from service.cart_ids import account_key, subject_tag
from service.carts import CartStore
from service.cli import main
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
    assert code == 0 and json.loads(out) == {"carts": 5, "damaged": 0, "damaged_keys": []}
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
    code, out, _ = run(capsys, "show", "nobody", "--json")
    assert code == 1 and json.loads(out)["exists"] is False


def test_purge_confirms_unless_yes(carts, capsys, key_prefix, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # not a terminal: nobody to confirm
    code, _, err = run(capsys, "purge", "chat-1")
    assert code == 4 and "--yes" in err  # not confirmed: 4, never 1 (which means not found)
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
    assert code == 4 and "--yes" in err and carts.exists(f"{key_prefix}:cart:{{chat-0}}")
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
        "purging: 1000",
        "purging: 2000",
        "purging: 3000",
        "purging: 3500",
    ]


def test_purge_of_a_missing_id_is_not_found(carts, capsys, key_prefix) -> None:
    code, out, _ = run(capsys, "purge", "nobody", "--yes", "--json")
    assert code == 1 and json.loads(out) == {"key": f"{key_prefix}:cart:{{nobody}}", "deleted": False}
    code, out, _ = run(capsys, "purge", "nobody", "--yes")
    assert code == 1 and "no cart" in out


def test_redis_failure_is_exit_3_with_the_reason(capsys, monkeypatch) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("WEFT_REDIS_URL", "redis://:Not-The-Pa55@127.0.0.1:1/0")  # nothing listens there
    code, _, err = run(capsys, "count")
    assert code == 3 and len(err.strip().splitlines()) == 1 and "Not-The-Pa55" not in err
    assert "cannot be reached" in err, err


def test_damaged_keys_are_skipped_reported_and_purgeable(carts, capsys, key_prefix, monkeypatch) -> None:
    """A foreign string at a cart key and a cart with an unreadable stamp: no command crashes; each is reported."""
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    string_key, list_key, stamp_key = (f"{key_prefix}:cart:{{{name}}}" for name in ("str", "lst", "chat-2"))
    carts.set(string_key, "not a cart")
    carts.rpush(list_key, "a", "b")
    carts.hset(stamp_key, "_last_accessed", "yesterday")
    damaged = {string_key, list_key, stamp_key}

    code, out, err = run(capsys, "count", "--json")
    counted = json.loads(out)
    assert code == 0 and counted["carts"] == 4 and counted["damaged"] == 3, (counted, err)
    assert set(counted["damaged_keys"]) == damaged

    code, out, err = run(capsys, "list", "--json", "--limit", "50")
    assert code == 0, err
    assert {row["session_key"] for row in json.loads(out)} == {"chat-0", "chat-1", "chat-3", session_key(LONG_ID)}
    for key in damaged:
        assert key in err
    code, out, err = run(capsys, "list")
    assert code == 0 and "3 damaged" in out + err

    code, out, err = run(capsys, "purge-idle", "--older-than", "7d", "--yes", "--json")
    report = json.loads(out)
    assert code == 0 and report["deleted"] == 1 and report["damaged"] == 3, (report, err)
    assert set(report["damaged_keys"]) == damaged
    assert carts.get(string_key) == "not a cart" and carts.exists(stamp_key)  # skipped, not deleted

    code, out, err = run(capsys, "show", "str", "--json")
    detail = json.loads(out)
    assert code == 0 and detail["exists"] and "string" in detail["damaged"], (detail, err)
    code, out, err = run(capsys, "show", "chat-2")
    assert code == 0 and "damaged" in out.lower() and "3 line(s)" in out, out
    code, out, _ = run(capsys, "purge", "str", "--yes", "--json")
    assert code == 0 and json.loads(out)["deleted"] is True and not carts.exists(string_key)
    code, out, _ = run(capsys, "purge", "chat-2", "--yes")
    assert code == 0 and not carts.exists(stamp_key)


def test_two_deployments_with_overlapping_prefixes_side_by_side(carts, capsys, key_prefix, monkeypatch) -> None:
    """``P`` and ``P:cart:eu`` on one Redis: counting, listing and purging each touch only their own carts."""
    eu_prefix = f"{key_prefix}:cart:eu"
    old = int(time.time()) - 30 * 86400
    for name in ("eu-1", "eu-2", "eu-3"):
        line = {"demo:i1": '{"q":1,"n":"x","p":"1.00"}', "_last_accessed": old}
        carts.hset(f"{eu_prefix}:cart:{{{name}}}", mapping=line)
    eu_keys = {f"{eu_prefix}:cart:{{{name}}}" for name in ("eu-1", "eu-2", "eu-3")}

    code, out, _ = run(capsys, "count", "--json")
    assert code == 0 and json.loads(out)["carts"] == 5
    code, out, _ = run(capsys, "list", "--json", "--limit", "50")
    listed = json.loads(out)
    assert len(listed) == 5 and not any(row["key"].startswith(eu_prefix) for row in listed), listed
    code, out, _ = run(capsys, "purge-idle", "--older-than", "7d", "--yes", "--json")
    assert code == 0 and json.loads(out)["deleted"] == 1 and json.loads(out)["scanned"] == 5
    assert all(carts.exists(key) for key in eu_keys)  # the other deployment's idle carts survive

    monkeypatch.setenv("WEFT_KEY_PREFIX", eu_prefix)
    code, out, _ = run(capsys, "count", "--json")
    assert code == 0 and json.loads(out)["carts"] == 3
    code, out, _ = run(capsys, "purge-idle", "--older-than", "7d", "--yes", "--json")
    assert json.loads(out)["deleted"] == 3 and not any(carts.exists(key) for key in eu_keys)
    assert carts.exists(f"{key_prefix}:cart:{{chat-3}}")


def test_carts_with_garbage_lines_or_stamps_are_reported_marked_and_purgeable(
    carts, capsys, key_prefix, monkeypatch
) -> None:
    """Lines and stamps written by hand (redis-cli HSET) on real carts: every report names the key as damaged,
    ``show`` marks the unreadable line without printing its escape sequence, and ``purge`` removes the key."""
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    line_key, stamp_key = (f"{key_prefix}:cart:{{{name}}}" for name in ("chat-1", "chat-3"))
    carts.hset(line_key, "demo:i7", '{"q":-3,"n":"\\u001b[31mx","p":"-5"}')
    carts.hset(stamp_key, "_last_accessed", "99999999999999999999999999")

    code, out, err = run(capsys, "count", "--json")
    counted = json.loads(out)
    assert code == 0 and (counted["carts"], set(counted["damaged_keys"])) == (3, {line_key, stamp_key}), (counted, err)
    code, out, err = run(capsys, "list", "--json", "--limit", "50")
    assert {row["session_key"] for row in json.loads(out)} == {"chat-0", "chat-2", session_key(LONG_ID)}
    assert "1 unreadable line(s)" in err and "unreadable _last_accessed" in err
    code, out, err = run(capsys, "purge-idle", "--older-than", "1s", "--yes", "--json")
    report = json.loads(out)
    assert (report["damaged"], carts.exists(line_key), carts.exists(stamp_key)) == (2, 1, 1), report

    code, out, _ = run(capsys, "show", "chat-1")
    assert code == 0 and "DAMAGED: 1 unreadable line(s)" in out and "\x1b" not in out, out
    marked = [row for row in out.splitlines() if "demo:i7" in row]
    assert len(marked) == 1 and "unreadable" in marked[0], out
    code, out, _ = run(capsys, "show", "chat-1", "--json")
    lines = {line["product_id"]: line for line in json.loads(out)["lines"]}
    assert lines["demo:i7"]["damaged"] is True and "demo:i0" in lines and not lines["demo:i0"].get("damaged")
    for session in ("chat-1", "chat-3"):
        code, out, _ = run(capsys, "purge", session, "--yes")
        assert code == 0
    assert not carts.exists(line_key) and not carts.exists(stamp_key)


def test_account_carts_are_marked_by_subject_tag_and_found_by_subject(carts, capsys, key_prefix, redis_url) -> None:
    """list/show say whose a cart is by the subject's tag, never the subject; ``--subject`` hashes it the same way."""
    alice = subject_tag("alice@example.com")

    async def fill() -> None:
        store = CartStore.connect(redis_url, key_prefix=key_prefix)
        try:
            await store.add(account_key(alice), "demo:i1", 3, "Oats", Decimal("9.90"))
            await store.add(f"u-{alice}.chat-1", "demo:i2", 1, "Tea", Decimal("5.00"))
        finally:
            await store.aclose()

    asyncio.run(fill())
    code, out, _ = run(capsys, "list", "--json", "--limit", "50")
    listed = {row["session_key"]: row for row in json.loads(out)}
    assert (listed[f"u-{alice}"]["kind"], listed[f"u-{alice}"]["subject_tag"]) == ("account", alice)
    assert (listed[f"u-{alice}.chat-1"]["kind"], listed[f"u-{alice}.chat-1"]["subject_tag"]) == ("shopper", alice)
    assert (listed["chat-1"]["kind"], listed["chat-1"]["subject_tag"]) == ("anonymous", None)
    code, out, _ = run(capsys, "list", "--limit", "50")
    assert f"account {alice}" in out and "alice" not in out.replace(alice, "")
    code, out, _ = run(capsys, "show", "--subject", "alice@example.com", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["key"] == f"{key_prefix}:cart:{{u-{alice}}}" and shown["lines"][0]["quantity"] == 3
    assert "alice@" not in out
    code, out, _ = run(capsys, "show", "chat-1", "--subject", "alice@example.com")
    assert code == 0 and "Tea" in out and f"shopper {alice}" in out and "alice@" not in out
    code, out, _ = run(capsys, "show", "--subject", "bob@example.com")
    assert code == 1 and "no cart" in out
    code, _, err = run(capsys, "show")
    assert code == 2 and "--subject" in err
    code, out, _ = run(capsys, "purge", "--subject", "alice@example.com", "--yes")
    assert code == 0 and not carts.exists(f"{key_prefix}:cart:{{u-{alice}}}")
    assert carts.exists(f"{key_prefix}:cart:{{u-{alice}.chat-1}}")
