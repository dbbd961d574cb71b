"""Bad settings end ``weft-mcp serve`` and ``weft-mcp sessions`` with exit 2 and ONE stderr line that names
the variable and the reason: no traceback, no pydantic dump, and never the Redis password."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness.processes import serve_command, serve_env
from service.config import Settings

SECRET = "TopSecret"
BAD_REDIS_URLS = [
    f"redis://:Pa55:{SECRET}/xyz@127.0.0.1:1/0",  # the case: ':' and '/' in the password
    f"redis://:{SECRET}/slash@127.0.0.1:6379/0",  # '/' ends the host part early
    f"redis://admin:{SECRET}@127.0.0.1:notaport/0",  # a port that is no number
    f"redis://:{SECRET}@127.0.0.1:6379/db{SECRET}",  # a database that is no number
    f":{SECRET}@127.0.0.1:6379/0",  # no scheme at all
    "127.0.0.1:6379",  # no scheme, no password
    f"http://:{SECRET}@127.0.0.1:6379/0",  # a scheme that is not Redis'
    f"redis://:{SECRET}@127.0.0.1:99999/0",  # a port out of range
    f"redis://:{SECRET}@127.0.0.1:6379/0?ssl_cert_reqs=bogus",  # an option this connection kind does not take
    f"redis://:{SECRET}@127.0.0.1:6379/0?max_connections=-5",  # an option value redis-py refuses
    f"redis://:{SECRET}@127.0.0.1:6379/0?protocol=9",  # a protocol that does not exist
    f"redis://:{SECRET}@127.0.0.1:6379/0?socket_timeout={SECRET}",  # an option value that is no number
    f"redis://:{SECRET}@127.0.0.1:6379/0?{SECRET}=1",  # an unknown option
    f"redis://:{SECRET}@127.0.0.1:6379/0?socket_connect_timeout=-1",  # a timeout below zero
    f"redis://:{SECRET}@127.0.0.1:6379/0?socket_timeout=nan",  # a timeout that is no number
    f"redis://:{SECRET}@127.0.0.1:6379/0?retry_on_timeout=maybe",  # a yes/no option that is neither
    f"redis://:{SECRET}@127.0.0.1:6379/0?client_name=a%20b%0A",  # a client name Redis refuses
    f"redis://:{SECRET}@127.0.0.1:6379/99999999999999999999",  # a database beyond any Redis'
]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=serve_env(env),
        cwd=os.path.dirname(__file__),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def sessions_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "sessions", *args]


def assert_one_line(completed: subprocess.CompletedProcess[str], *needles: str) -> str:
    err = completed.stderr.strip()
    assert completed.returncode == 2, (completed.returncode, completed.stderr)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "input_value" not in err and "pydantic" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.e2e
@pytest.mark.parametrize("url", BAD_REDIS_URLS)
def test_bad_redis_url_is_one_line_without_the_password(url: str) -> None:
    env = {"WEFT_REDIS_URL": url}
    for command in (serve_command(port=0), sessions_command("count"), sessions_command("list", "--json")):
        completed = run_cli(command, env)
        err = assert_one_line(completed, "WEFT_REDIS_URL")
        assert SECRET not in completed.stderr and SECRET not in completed.stdout, err
        assert "Pa55" not in completed.stderr, err


def test_percent_encoded_password_is_accepted() -> None:
    """The fix the error message advises works: '/', ':' and '@' percent-encoded."""
    settings = Settings(redis_url="redis://:Pa55%3ATop%2FSecret%40x@127.0.0.1:6379/0", _env_file=None)
    assert settings.redis_url is not None
    for url in (
        "rediss://user:pw@cache.example.com:6380/2",
        "unix:///run/redis.sock?db=1",
        "redis://localhost",
        "redis://localhost:6379/0?socket_timeout=5&health_check_interval=10",
        "rediss://cache.example.com/0?ssl_cert_reqs=none",
    ):
        assert Settings(redis_url=url, _env_file=None).redis_url == url


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEFT_KEY_PREFIX", "weft{eu}"),
        ("WEFT_KEY_PREFIX", "shop*"),
        ("WEFT_KEY_PREFIX", ""),
        ("WEFT_PORT", "eighty"),
        ("WEFT_LOG_FORMAT", "xml"),
        ("WEFT_CART_TTL_SECONDS", "-5"),
    ],
)
def test_other_bad_settings_are_one_line_naming_the_variable(variable: str, value: str) -> None:
    env = {variable: value, "WEFT_REDIS_URL": "redis://127.0.0.1:1/0"}
    for command in (serve_command(), sessions_command("count")):  # no --port: it would override WEFT_PORT
        completed = run_cli(command, env)
        err = assert_one_line(completed, variable)
        if len(value) > 2:
            assert value not in err, err  # the reason, not an echo of the input


@pytest.mark.e2e
def test_two_bad_settings_are_named_in_one_line() -> None:
    completed = run_cli(serve_command(port=0), {"WEFT_KEY_PREFIX": "a b", "WEFT_MAX_QUANTITY": "0"})
    assert_one_line(completed, "WEFT_KEY_PREFIX", "WEFT_MAX_QUANTITY")


@pytest.mark.e2e
def test_workers_without_redis_exit_with_a_message() -> None:
    started = time.monotonic()
    completed = run_cli(serve_command(port=0, extra_args=["--workers", "2"]), {})  # no .env in tests/
    assert completed.returncode != 0
    assert time.monotonic() - started < 10
    assert "WEFT_REDIS_URL" in completed.stderr, completed.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WEFT_SECRET_KEY", "short-" + SECRET), ("WEFT_SECRET_KEY_PREVIOUS", "x" * 40 + ",tiny" + SECRET)],
)
def test_short_server_secrets_are_refused_without_echoing_them(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line names the variable, the rule and how to make a good secret; the value never appears."""
    from service.config import settings_error_line

    monkeypatch.setenv(variable, value)
    with pytest.raises(Exception) as caught:
        Settings(_env_file=None)
    line = settings_error_line(caught.value)
    assert variable in line and "at least 32 characters" in line and "secrets.token_urlsafe(32)" in line, line
    assert SECRET not in line and "tiny" not in line


def test_server_secret_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEFT_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("WEFT_SECRET_KEY_PREVIOUS", " " + "a" * 32 + " , " + "b" * 40 + ",")
    settings = Settings(_env_file=None)
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "k" * 32
    assert [secret.get_secret_value() for secret in settings.secret_key_previous] == ["a" * 32, "b" * 40]
    assert "k" * 32 not in repr(settings)
    assert settings.session_fallback == "mint" and settings.idempotency_ttl_seconds == 86400
    monkeypatch.setenv("WEFT_SECRET_KEY", "")
    assert Settings(_env_file=None).secret_key is None
