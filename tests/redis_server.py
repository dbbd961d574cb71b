"""Start and stop private ``redis-server`` processes on free loopback ports for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def answers_ping(port: int, timeout: float) -> bool:
    """Whether a Redis (or Sentinel) on ``port`` answers PING before ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.05)
        return False
    finally:
        client.close()


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 5 s: a test never leaves a server behind."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisProcess:
    """One ``redis-server`` that keeps nothing on disk unless extra args say so."""

    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-redis-")))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisProcess:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server is not installed")
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not answers_ping(self.port, timeout):
            self.stop()
            raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout} s")
        return self

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def free_cluster_port(limit: int = 55000) -> int:
    """A free port below ``limit`` whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port >= limit:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {limit} with a free cluster bus port")


@dataclass
class RedisCluster:
    """A Redis Cluster of ``size`` primaries (no replicas) built from ``redis-server --cluster-enabled yes``."""

    size: int = 3
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 20.0) -> RedisCluster:
        try:
            for _ in range(self.size):
                node = RedisProcess(port=free_cluster_port())
                config_file = str(node.workdir / f"nodes-{node.port}.conf")
                node.extra_args = ("--cluster-enabled", "yes", "--cluster-config-file", config_file,
                                   "--cluster-node-timeout", "2000")  # fmt: skip
                self.nodes.append(node.start())
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(self._state_ok(node) for node in self.nodes):
                    return self
                time.sleep(0.1)
            raise TimeoutError(f"the cluster did not reach cluster_state:ok within {timeout} s")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _state_ok(node: RedisProcess) -> bool:
        with redis.Redis(port=node.port, decode_responses=True) as client:
            return client.cluster("INFO").get("cluster_state") == "ok"

    def primaries(self) -> list[redis.Redis]:
        """A plain client per node (every node is a primary here), for checks behind the service's back."""
        return [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelProcess:
    """One ``redis-server <conf> --sentinel`` watching ``service`` at 127.0.0.1:``primary_port``."""

    primary_port: int
    service: str = "mymaster"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="weft-sentinel-")))

    def start(self, timeout: float = 10.0) -> SentinelProcess:
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nsentinel resolve-hostnames no\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not answers_ping(self.port, timeout):
            self.stop()
            raise TimeoutError(f"sentinel on port {self.port} did not answer within {timeout} s")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def primary_port_seen(self) -> int | None:
        """The primary's port this sentinel names now."""
        with redis.Redis(port=self.port, decode_responses=True, socket_timeout=1) as client:
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
        return int(answer[1]) if answer else None

    def stop(self) -> None:
        terminate(self.process)
        self.process = None


@dataclass
class SentinelSet:
    """A primary, one replica and ``count`` sentinels (quorum 2), all on loopback."""

    count: int = 3
    primary: RedisProcess = field(default_factory=RedisProcess)
    replica: RedisProcess = field(default_factory=RedisProcess)
    sentinels: list[SentinelProcess] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def start(self, timeout: float = 20.0) -> SentinelSet:
        try:
            self.primary.extra_args = ("--repl-diskless-sync-delay", "0")  # the replica syncs at once
            self.primary.start()
            self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.primary.port))
            self.replica.start()
            deadline = time.monotonic() + timeout
            with redis.Redis(port=self.primary.port, decode_responses=True) as client:
                while client.info("replication").get("slave0", {}).get("state") != "online":
                    if time.monotonic() > deadline:
                        raise TimeoutError("the replica did not connect to the primary")
                    time.sleep(0.1)
            for _ in range(self.count):
                self.sentinels.append(SentinelProcess(primary_port=self.primary.port).start())
            # Every sentinel must know the replica and the other sentinels before a failover can work.
            while not all(self._sentinel_ready(sentinel) for sentinel in self.sentinels):
                if time.monotonic() > deadline:
                    raise TimeoutError("the sentinels did not discover the replica and each other")
                time.sleep(0.2)
            return self
        except BaseException:
            self.stop()
            raise

    def _sentinel_ready(self, sentinel: SentinelProcess) -> bool:
        with redis.Redis(port=sentinel.port, decode_responses=True, socket_timeout=1) as client:
            state = client.execute_command("SENTINEL", "MASTER", sentinel.service)
        state = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
        return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= self.count - 1

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.primary.stop()
        self.replica.stop()
