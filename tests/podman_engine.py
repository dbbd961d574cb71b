"""A private rootful podman that serves the Docker API: to docker-compose for the stack test, and to
testcontainers for the containers Redis backend (tests/redis_container.py). One per test session
(the ``podman_service`` fixture in tests/conftest.py), so both use one service on one storage.

Started with its own ``CONTAINERS_CONF`` (runc, cgroupfs, no default ulimits, netavark so that
service names resolve on a compose network) on a socket in a temporary folder; stopped by PID.
Podman schedules healthchecks with systemd timers; where systemd is not PID 1 nothing runs them,
so ``HealthTicker`` runs ``podman healthcheck run`` for the project's containers itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"

[network]
network_backend = "netavark"
"""

# netavark runs iptables to publish ports and set up networks ("netavark: No such file or directory" without it).
PODMAN_NEEDED = ("podman", "runc", "netavark", "iptables")
NEEDED = (*PODMAN_NEEDED, "docker-compose", "debootstrap")


def _missing(tools: tuple[str, ...]) -> list[str]:
    places = ("/usr/lib/podman", "/usr/sbin", "/sbin")
    return [tool for tool in tools if not shutil.which(tool) and not any(Path(p, tool).exists() for p in places)]


def why_no_podman(needed: tuple[str, ...] = PODMAN_NEEDED) -> str | None:
    """Why a private rootful podman cannot run here, or None when it can."""
    missing = _missing(needed)
    if missing:
        return f"not installed: {', '.join(missing)} (.ci/run installs them)"
    if os.geteuid() != 0:
        return "the private podman service is rootful: run as root"
    return None


def why_no_engine() -> str | None:
    """Why the stack cannot run here, or None when it can."""
    return why_no_podman(NEEDED)


class PodmanService:
    """``podman system service --time=0 unix://<folder>/podman.sock`` with a private containers.conf."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "podman.sock"
        self.conf = folder / "containers.conf"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """For podman commands and for docker-compose (DOCKER_HOST; the API build, not a `docker` CLI)."""
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.conf),
            "DOCKER_HOST": f"unix://{self.socket}",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_HTTP_TIMEOUT": "300",
        }

    def start(self, timeout: float = 30.0) -> PodmanService:
        self.conf.write_text(CONTAINERS_CONF)
        log = open(self.folder / "podman-service.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited: {(self.folder / 'podman-service.log').read_text()}")
            probe = subprocess.run(
                ["curl", "-fsS", "--unix-socket", str(self.socket), "http://d/_ping"],
                capture_output=True,
                timeout=5,
            )
            if probe.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("podman system service did not answer on its socket")

    def podman(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


class HealthTicker:
    """Runs every healthcheck of a compose project's containers each ``interval`` seconds, in a thread."""

    def __init__(self, engine: PodmanService, project: str, interval: float = 1.0) -> None:
        self.engine = engine
        self.project = project
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-ticker", daemon=True)

    def start(self) -> HealthTicker:
        self._thread.start()
        return self

    def _run(self) -> None:
        label = f"label=com.docker.compose.project={self.project}"
        while not self._stop.wait(self.interval):
            try:
                names = self.engine.podman("ps", "--filter", label, "--format", "{{.Names}}", check=False).stdout
                for name in names.split():
                    self.engine.podman("healthcheck", "run", name, check=False, timeout=10)
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
