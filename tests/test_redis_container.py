"""The containers Redis backend itself (tests/redis_container.py): nothing left behind (a failed test, a killed
run), testcontainers' settings put back."""

from __future__ import annotations

import os
import socket
import subprocess

import docker
import pytest
import redis

from tests.redis_container import LABEL, ContainerRedis, labelled, remove_orphans, settings_for_testcontainers


def test_testcontainers_settings_hold_only_inside_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    monkeypatch.setenv("DOCKER_HOST", "unix:///somewhere/else.sock")
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    before = (testcontainers_config.ryuk_disabled, testcontainers_config.connection_mode_override)
    with settings_for_testcontainers("unix:///tmp/podman.sock"):
        assert os.environ["DOCKER_HOST"] == "unix:///tmp/podman.sock"
        assert os.environ["TESTCONTAINERS_RYUK_DISABLED"] == "true"
        assert os.environ["TESTCONTAINERS_CONNECTION_MODE"] == "docker_host"
        assert testcontainers_config.ryuk_disabled is True
        assert testcontainers_config.connection_mode_override is ConnectionMode.docker_host
    assert os.environ["DOCKER_HOST"] == "unix:///somewhere/else.sock"
    assert "TESTCONTAINERS_RYUK_DISABLED" not in os.environ
    assert (testcontainers_config.ryuk_disabled, testcontainers_config.connection_mode_override) == before


@pytest.mark.redis
@pytest.mark.containers
def test_a_failing_test_leaves_no_container(containers_redis: ContainerRedis) -> None:
    """A second container, started the way the session's is, is gone after the block fails, running or not
    (``podman ps -a`` on a podman engine: the Docker API lists all containers of the same storage)."""
    label = f"{containers_redis.label} failing-test"
    with pytest.raises(RuntimeError, match="the test failed"):
        with ContainerRedis(containers_redis.engine, containers_redis.image, label=label) as second:
            assert [c.id for c in labelled(second.engine, label)] == [second.container.get_wrapped_container().id]
            client = redis.Redis.from_url(second.url)
            assert client.ping() is True
            client.close()
            raise RuntimeError("the test failed")
    assert labelled(containers_redis.engine, label) == []
    # the session's own container is untouched
    client = redis.Redis.from_url(containers_redis.url)
    assert client.ping() is True
    client.close()


@pytest.mark.redis
@pytest.mark.containers
def test_containers_of_a_killed_run_are_removed_at_the_next_start(containers_redis: ContainerRedis) -> None:
    """A run killed before its teardown (no reaper here) leaves its container; the next session removes
    it, and only it: not the containers of a pytest that still runs, nor those of other hosts."""
    dead_pid = subprocess.Popen(["true"])  # a pid whose process has exited
    dead_pid.wait()
    labels = {
        "dead": f"redis {socket.gethostname()} {dead_pid.pid}",
        "alive": f"redis {socket.gethostname()} {os.getpid()} orphan-test",
        "elsewhere": f"redis some-other-host {dead_pid.pid}",
    }
    client = containers_redis.engine.client()
    created = [client.containers.create(containers_redis.image, labels={LABEL: value}) for value in labels.values()]
    try:
        assert remove_orphans(containers_redis.engine) == 1
        left = {c.labels[LABEL] for c in labelled(containers_redis.engine) if c.id in {x.id for x in created}}
        assert left == {labels["alive"], labels["elsewhere"]}
    finally:
        for container in created:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
    assert [c for c in labelled(containers_redis.engine) if c.id in {x.id for x in created}] == []
