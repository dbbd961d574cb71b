"""The process helpers' guard: a test that is not marked for a kind of server cannot start one."""

from __future__ import annotations

import os

import pytest

from harness.processes import MAY_START, RedisProcess, ServeProcess, check_may_start, serve_command


def test_an_unmarked_test_may_start_no_server() -> None:
    """conftest sets the allowed kinds from this test's markers: none, so every start is refused."""
    assert os.environ[MAY_START] == ""
    for server in (RedisProcess(), ServeProcess()):
        with pytest.raises(RuntimeError, match="not marked"):
            server.start()
        assert server.process is None and not server.log_path.exists()  # refused before anything ran
    with pytest.raises(RuntimeError, match="@pytest.mark.e2e"):
        serve_command(port=0)


def test_only_the_kinds_named_may_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAY_START, "redis")  # what conftest sets for a test marked redis only
    check_may_start("redis")
    with pytest.raises(RuntimeError, match="@pytest.mark.e2e"):
        check_may_start("e2e")


def test_outside_pytest_everything_may_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench and scripts run without the variable: nothing is refused."""
    monkeypatch.delenv(MAY_START)
    check_may_start("redis")
    check_may_start("e2e")
