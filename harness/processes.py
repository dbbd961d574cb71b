"""Start and stop the processes tests and bench need: private ``redis-server``s and ``weft-mcp serve``.

Every process runs in its own process group with a private working folder and a log file there,
and ``stop()`` ends it one way: SIGTERM, a wait, then SIGKILL to whatever is left of the group
(uvicorn's workers too). With ``HARNESS_MAY_START`` set to a comma-separated list of kinds
(``redis``, ``e2e``) the other kinds refuse to start: tests/conftest.py sets it from each test's
markers, so a test that starts servers unmarked fails instead of slowing the fast layer.
"""

from __future__ import annotations

import abc
import functools
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
SHIPPED_REDIS_CONF = REPO / "deploy" / "redis.conf"
MAY_START = "HARNESS_MAY_START"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_may_start(kind: str) -> None:
    """Refuse to start a ``kind`` process when ``HARNESS_MAY_START`` is set and does not name ``kind``."""
    allowed = os.environ.get(MAY_START)
    if allowed is not None and kind not in allowed.split(","):
        raise RuntimeError(f"this test starts a {kind} process but is not marked @pytest.mark.{kind}")


def pin(pid: int, cpu_index: int) -> None:
    """Pin ``pid`` (0: the caller) to the ``cpu_index``-th usable CPU; a no-op on a one-CPU machine."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) >= 2:
        os.sched_setaffinity(pid, {usable[cpu_index % len(usable)]})


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM, up to ``timeout`` s to exit, then SIGKILL to its process group: no stuck child stays behind."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``process`` leads (started with ``start_new_session``), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Poll ``ready`` until it holds; RuntimeError if ``process`` exits first, TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {timeout} s")
        time.sleep(0.05)


@dataclass(kw_only=True)
class LocalProcess(abc.ABC):
    """A child on a loopback port with a private folder and log file, in its own process group."""

    kind: ClassVar[str] = "e2e"  # the marker a test needs to start one (check_may_start)
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-harness-")))
    keep_files: bool = True  # False: stop() removes the folder (the bench); tests keep logs and AOF files
    cpu: int | None = None  # pin it (and its children) to the cpu-th usable CPU, as the bench does
    startup_timeout: float = 20.0
    stop_timeout: float = 5.0
    process: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The program and its arguments."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the child answers (polled until ``startup_timeout``)."""

    def environment(self) -> dict[str, str] | None:
        return None  # the parent's

    def before_exec(self) -> None:
        """Runs in the child before its program starts."""
        if self.cpu is not None:
            pin(0, self.cpu)

    @property
    def log_path(self) -> Path:
        return self.workdir / "process.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        check_may_start(self.kind)
        command = self.command()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() and kill() reach its children through the group
                preexec_fn=self.before_exec,
            )
        try:
            wait_until(self.ready, self.process, self.startup_timeout, f"{' '.join(command[:4])} (port {self.port})")
        except (RuntimeError, TimeoutError) as error:
            log_text = self.log_text()
            self.stop()
            raise type(error)(f"{error}:\n{log_text}") from None
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, self.stop_timeout)
        if not self.keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL at once: no shutdown, no final fsync, as a crash."""
        process, self.process = self.process, None
        if process is not None:
            kill_group(process)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------- redis-server


@functools.cache
def shipped_redis_settings() -> dict[str, str]:
    """deploy/redis.conf's directives (name -> value), read once; empty if the file is absent."""
    if not SHIPPED_REDIS_CONF.is_file():
        return {}
    settings = {}
    for line in SHIPPED_REDIS_CONF.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words:
            settings[words[0]] = " ".join(words[1:])
    return settings


def as_flags(settings: Mapping[str, str]) -> tuple[str, ...]:
    """``{"maxmemory": "256mb"}`` -> ``("--maxmemory", "256mb")``: redis-server's command-line form."""
    return tuple(word for name, value in settings.items() for word in (f"--{name}", value))


@dataclass(kw_only=True)
class RedisProcess(LocalProcess):
    """A private ``redis-server`` on 127.0.0.1 in its own folder.

    Without ``config_file`` it keeps nothing on disk unless ``extra_args`` say so. With one (a copy of
    deploy/redis.conf, a sentinel.conf), the file applies, but for the port, bind address and folder.
    """

    kind: ClassVar[str] = "redis"
    extra_args: Sequence[str] = ()
    config_file: Path | None = None
    startup_timeout: float = 10.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server is not installed")
        head = [executable, str(self.config_file)] if self.config_file else [executable]
        no_persistence = [] if self.config_file else ["--save", "", "--appendonly", "no"]
        private = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--daemonize", "no"]
        return [*head, *private, *no_persistence, *self.extra_args]

    def ready(self) -> bool:
        with redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1) as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

    def client(self) -> redis.Redis:
        """A plain client (strings, not bytes) for checks behind the service's back."""
        return redis.Redis(port=self.port, decode_responses=True)


# ---------------------------------------------------------------- weft-mcp serve (and other HTTP servers)


def serve_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without ``WEFT_*`` (so the developer's settings never leak in), plus overrides."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEFT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["WEFT_SHUTDOWN_DRAIN_SECONDS"] = "0"  # stop() at once, unless a test overrides it
    env.update(overrides or {})
    return env


def serve_command(port: int | None = None, host: str = "127.0.0.1", extra_args: Sequence[str] = ()) -> list[str]:
    """``python -m service.cli serve ...`` with this interpreter: the checkout's code, as ``weft-mcp serve``."""
    check_may_start("e2e")
    command = [sys.executable, "-m", "service.cli", "serve", "--host", host]
    if port is not None:
        command += ["--port", str(port)]
    return [*command, *extra_args]


@dataclass(kw_only=True)
class HttpProcess(LocalProcess):
    """An HTTP server on 127.0.0.1, ready once ``GET health_path`` answers 200; run in a fresh folder
    (so no stray ``.env`` is read) with ``serve_env(env)``."""

    health_path: ClassVar[str] = "/healthz"
    env: Mapping[str, str] = field(default_factory=dict)
    open_files_limit: int | None = None  # RLIMIT_NOFILE (soft and hard), as `ulimit -n N`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def environment(self) -> dict[str, str]:
        return serve_env(self.env)

    def before_exec(self) -> None:
        super().before_exec()
        if self.open_files_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}{self.health_path}", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(kw_only=True)
class ServeProcess(HttpProcess):
    """One ``weft-mcp serve`` process (and, with ``--workers N``, its workers)."""

    extra_args: Sequence[str] = ()

    def command(self) -> list[str]:
        return serve_command(self.port, extra_args=self.extra_args)
