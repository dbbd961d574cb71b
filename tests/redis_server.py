"""Redis topologies for tests, built from ``harness.processes.RedisProcess``: a cluster, a Sentinel set."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

import pytest
import redis

from harness.processes import RedisProcess, free_port


def require_redis_server(why: str = "") -> None:
    """Skip when ``redis-server`` is missing, or fail under ``WEFT_TEST_REQUIRE_REDIS=1`` (CI never skips)."""
    if shutil.which("redis-server") is not None:
        return
    needed = f" (needed {why})" if why else ""
    if os.environ.get("WEFT_TEST_REQUIRE_REDIS") == "1":
        pytest.fail(f"WEFT_TEST_REQUIRE_REDIS=1 but redis-server{needed} is not installed")
    pytest.skip("redis-server is not installed")


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
                node.extra_args = (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config_file,
                    "--cluster-node-timeout",
                    "2000",
                )
                self.nodes.append(node.start())
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    shutil.which("redis-cli") or "redis-cli",
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
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
        with node.client() as client:
            return client.cluster("INFO").get("cluster_state") == "ok"

    def primaries(self) -> list[redis.Redis]:
        """A plain client per node (every node is a primary here), for checks behind the service's back."""
        return [node.client() for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass(kw_only=True)
class SentinelProcess(RedisProcess):
    """One ``redis-server <conf> --sentinel`` watching ``service`` at 127.0.0.1:``primary_port``."""

    primary_port: int
    service: str = "mymaster"

    def command(self) -> list[str]:
        self.config_file = self.workdir / "sentinel.conf"  # sentinel rewrites it: one per process
        self.config_file.write_text(
            f"sentinel resolve-hostnames no\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        self.extra_args = ("--sentinel",)
        return super().command()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def primary_port_seen(self) -> int | None:
        """The primary's port this sentinel names now."""
        with redis.Redis(port=self.port, decode_responses=True, socket_timeout=1) as client:
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
        return int(answer[1]) if answer else None


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
            with self.primary.client() as client:
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
