"""The ``containers`` Redis backend (issue 15): testcontainers' ``RedisContainer`` on whichever engine answers.

Engine: ``DOCKER_HOST`` when set, else ``/var/run/docker.sock`` when it answers, else a private rootful
podman (tests/podman_engine.py, started by the session). Image: ``WEFT_TEST_REDIS_IMAGE``, default the
offline Redis image of deploy/build-offline-images, built by that script when missing (any other image
is pulled). testcontainers is told ``DOCKER_HOST``, no reaper (its image cannot be pulled offline) and
``docker_host`` connection mode only while it starts and stops the container, and everything is put back
afterwards. Every container carries a label, so the session can prove none is left behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "localhost/weft-offline-redis:bookworm"  # deploy/build-offline-images' REDIS_IMAGE
DOCKER_SOCKET = "unix:///var/run/docker.sock"
LABEL = "org.weft.test"  # value: "redis <host> <pid>" of the pytest process that started it


class NoEngine(Exception):
    """No container engine (or no image) can be had; the message is the reason."""


@dataclass
class Engine:
    """A Docker API endpoint, and how deploy/build-offline-images reaches the same engine."""

    docker_host: str
    description: str
    build_env: dict[str, str]

    def client(self, timeout: int = 30) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)


def answers(docker_host: str) -> bool:
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def external_engine() -> Engine | None:
    """``DOCKER_HOST`` (which must answer: it was set on purpose), else the default Docker socket, else None."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        if not answers(host):
            raise NoEngine(f"DOCKER_HOST={host} does not answer")
        return Engine(host, f"DOCKER_HOST={host}", {**os.environ, "ENGINE": "docker"})
    if Path(DOCKER_SOCKET.removeprefix("unix://")).exists() and answers(DOCKER_SOCKET):
        return Engine(DOCKER_SOCKET, f"Docker at {DOCKER_SOCKET}", {**os.environ, "ENGINE": "docker"})
    return None


def image_name() -> str:
    return os.environ.get("WEFT_TEST_REDIS_IMAGE") or DEFAULT_IMAGE


def ensure_image(engine: Engine, image: str) -> str:
    """Make ``image`` present on the engine: "present", "built" (the default) or "pulled" (any other)."""
    client = engine.client(timeout=600)
    try:
        try:
            client.images.get(image)
            return "present"
        except docker.errors.ImageNotFound:
            pass
        if image == DEFAULT_IMAGE:
            built = subprocess.run(
                [str(ROOT / "deploy" / "build-offline-images")],
                env=engine.build_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if built.returncode != 0:
                raise NoEngine(f"{image} is missing and deploy/build-offline-images failed: {built.stderr[-1500:]}")
            client.images.get(image)
            return "built"
        try:
            client.images.pull(image)
        except docker.errors.APIError as error:
            raise NoEngine(f"{image} is missing and cannot be pulled: {error}") from error
        return "pulled"
    finally:
        client.close()


@contextmanager
def settings_for_testcontainers(docker_host: str) -> Iterator[None]:
    """The settings testcontainers needs here, for the duration of the block only. testcontainers reads
    its environment once, at import, so its configuration object is set too; both are put back after."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", docker_host)
        patch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        patch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        patch.setattr(testcontainers_config, "ryuk_disabled", True)
        patch.setattr(testcontainers_config, "connection_mode_override", ConnectionMode.docker_host)
        yield


def _redis_container_class() -> Any:
    try:
        from testcontainers.community.redis import RedisContainer  # testcontainers >= 4.13
    except ImportError:  # pragma: no cover (older releases)
        from testcontainers.redis import RedisContainer
    return RedisContainer


def owner_label() -> str:
    return f"redis {socket.gethostname()} {os.getpid()}"


def labelled(engine: Engine, value: str | None = None) -> list[Any]:
    """Containers with the test label (of this process, or of any when ``value`` is None), running or not."""
    client = engine.client()
    try:
        label = f"{LABEL}={value}" if value else LABEL
        return list(client.containers.list(all=True, filters={"label": label}))
    finally:
        client.close()


def remove_orphans(engine: Engine) -> int:
    """Remove containers an interrupted earlier run on this host left (its pytest process is gone)."""
    removed = 0
    for container in labelled(engine):
        kind, host, pid = (container.labels.get(LABEL, "") + "  ").split(" ")[:3]
        if kind == "redis" and host == socket.gethostname() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            container.remove(force=True, v=True)
            removed += 1
    return removed


@dataclass
class ContainerRedis:
    """One Redis container: ``start()`` then ``url``; ``stop()`` removes it (also after a failed start)."""

    engine: Engine
    image: str
    label: str = field(default_factory=owner_label)
    url: str = ""
    container: Any = None

    def start(self) -> ContainerRedis:
        with settings_for_testcontainers(self.engine.docker_host):
            container = _redis_container_class()(image=self.image).with_kwargs(labels={LABEL: self.label})
            container.start()  # removes what it created when the start or the PING wait fails
            self.container = container
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        # "localhost" would try ::1 first, where the published port is not: a millisecond more per connection.
        self.url = f"redis://{'127.0.0.1' if host == 'localhost' else host}:{port}/0"
        return self

    def stop(self) -> None:
        if self.container is None:
            return
        with settings_for_testcontainers(self.engine.docker_host):
            self.container.stop(force=True, delete_volume=True)
        self.container = None

    def __enter__(self) -> ContainerRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Leg:
    """What the session's containers backend did, for the terminal summary line."""

    image: str = ""
    engine: str = ""
    skipped: str = ""
    timings: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    test_seconds: float = 0.0

    def summary(self) -> str | None:
        if self.skipped:
            return f"testcontainers backend: not run ({self.skipped})"
        if not self.outcomes and not self.image:
            return None
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items())) or "no tests"
        times = ", ".join(f"{name} {value}" for name, value in self.timings.items())
        return (
            f"testcontainers backend: {counts} against {self.image} via {self.engine}; {times}; "
            f"its tests {self.test_seconds:.1f} s (setup included)"
        )


LEG = Leg()
