"""Local Redis Sentinel and Redis Cluster set-ups, built from the ``redis-server`` binary.

Used by the tests (test_sentinel.py, test_cluster.py) and by the scale-out benchmark
(bench/scaleout.py). Every server listens on a free loopback port (never 6379), keeps its files in
its own temporary directory and is stopped by its pid only. Standard library and redis-py only,
like tests/redis_server.py.

- :class:`SentinelSet`: one primary, one replica and three sentinels (quorum 2) with a short
  ``down-after-milliseconds`` so that a killed primary is replaced within a few seconds.
- :class:`ClusterSet`: three primaries and three replicas (``--cluster-enabled yes``), joined by
  ``redis-cli --cluster create ... --cluster-replicas 1``, with a short node timeout.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence

import redis

from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_for

_TAKEN: set[int] = set()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port() -> int:
    """A free loopback port, not handed out before by this process, whose cluster bus port
    (port + 10000) is free too: a node that cannot bind either exits at once."""
    while True:
        port = free_port()
        if port not in _TAKEN and port != 6379 and port < 55535 and _free(port + 10000):
            _TAKEN.add(port)
            return port


class Server(RedisServer):
    """One ``redis-server`` (or sentinel) on a port whose cluster bus port is free too."""

    def __init__(self, args: Sequence[str] = (), *, sentinel: bool = False, durable: bool = False) -> None:
        super().__init__(persistent=durable, port=_port(), extra=args, prefix="sv-topo-redis-")
        self.sentinel = sentinel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, **kwargs)  # type: ignore[arg-type]

    def argv(self) -> list[str]:
        if not self.sentinel:
            return super().argv()
        # A sentinel rewrites its configuration file, so it gets one of its own.
        conf = self.dir / "sentinel.conf"
        conf.write_text("\n".join(self.extra) + "\n")
        return [
            *(self.binary, str(conf), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")),
        ]


class SentinelSet:
    """A primary, its replica(s) and three sentinels watching them under the name ``master``."""

    def __init__(
        self, *, master: str = "mymaster", replicas: int = 1, durable: bool = False, down_after_ms: int = 1000
    ) -> None:
        self.master = master
        self.primary = Server(durable=durable)
        follow = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replicas = [Server(follow, durable=durable) for _ in range(replicas)]
        self.replica = self.replicas[0]
        conf = [
            f"sentinel monitor {master} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} 4000",
            f"sentinel parallel-syncs {master} 1",
        ]
        self.sentinels = [Server(conf, sentinel=True) for _ in range(3)]

    @property
    def servers(self) -> list[Server]:
        return [self.primary, *self.replicas, *self.sentinels]

    @property
    def addresses(self) -> str:
        """The value of REDIS_SENTINELS."""
        return ",".join(s.address for s in self.sentinels)

    def start(self, timeout: float = 20.0) -> SentinelSet:
        try:
            for server in (self.primary, *self.replicas):
                server.start()
            self.wait_replicas(timeout)
            # Started after the replicas are attached, so the sentinels' first look at the primary
            # (INFO, then every 10 s) already lists them all.
            for server in self.sentinels:
                server.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_replicas(self, timeout: float) -> None:
        """Every replica in sync with the primary."""
        for r in self.replicas:
            replica = r.client()
            try:
                wait_for(
                    lambda replica=replica: replica.info("replication").get("master_link_status") == "up",
                    timeout,
                    0.05,
                    "the replica to sync",
                )
            finally:
                replica.close()

    def wait_ready(self, timeout: float) -> None:
        """Every sentinel knows every replica and the two other sentinels."""
        for s in self.sentinels:
            c = s.client()
            try:
                wait_for(
                    lambda c=c: (
                        len(c.sentinel_sentinels(self.master)) == 2
                        and len(c.sentinel_slaves(self.master)) == len(self.replicas)
                    ),
                    timeout,
                    0.1,
                    f"sentinel {s.port} to see the others",
                )
            finally:
                c.close()

    def current_primary_port(self) -> int:
        """The primary's port as the sentinels report it now."""
        for s in self.sentinels:
            if s.proc is None or s.proc.poll() is not None:
                continue
            c = s.client()
            try:
                host_port = c.sentinel_get_master_addr_by_name(self.master)
                return int(host_port[1])
            except redis.RedisError:
                continue
            finally:
                c.close()
        raise RuntimeError("no sentinel answers")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterSet:
    """Three primaries and three replicas forming one Redis Cluster."""

    def __init__(self, *, primaries: int = 3, replicas: int = 1, durable: bool = False, node_timeout_ms: int = 1000):
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-replica-validity-factor", "0",  # a replica may always take over
        ]  # fmt: skip
        self.replicas = replicas
        self.nodes = [Server(args, durable=durable) for _ in range(primaries * (1 + replicas))]

    @property
    def url(self) -> str:
        """A seed node's URL; the client learns the rest from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> ClusterSet:
        try:
            for node in self.nodes:
                try:
                    node.start()
                except RuntimeError:
                    # Another program took the port (or its bus port) since it was picked: no node
                    # knows this one's port before the cluster is created, so take another.
                    node.kill()
                    node.port = _port()
                    node.start()
            cli = shutil.which("redis-cli")
            if cli is None:
                raise RuntimeError("redis-cli is not installed")
            argv = [cli, "--cluster", "create", *(n.address for n in self.nodes)]
            argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            out = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout.decode()[-2000:]}")
            self.wait_ok(timeout)
            self.wait_replicas(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def live(self) -> list[Server]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_ok(self, timeout: float) -> None:
        """Every live node says cluster_state:ok and agrees that every slot is served."""

        def ok(c: redis.Redis) -> bool:
            info = c.execute_command("CLUSTER INFO")
            return str(info.get("cluster_state")) == "ok" and int(info.get("cluster_slots_ok", 0)) == 16384

        wait_for(lambda: self._every_live(ok), timeout, 0.1, "the cluster to be ok")

    def wait_replicas(self, timeout: float) -> None:
        """Every replica linked to its primary (WAIT counts only those): the cluster is usable
        before its replicas have synced."""

        def linked(c: redis.Redis) -> bool:
            info = c.info("replication")
            return info.get("role") != "slave" or info.get("master_link_status") == "up"

        wait_for(lambda: self._every_live(linked), timeout, 0.1, "every replica to sync")

    def _every_live(self, test: Callable[[redis.Redis], bool]) -> bool:
        """``test`` holds on every live node (False as soon as one fails it or does not answer)."""
        for n in self.live():
            c = n.client()
            try:
                if not test(c):
                    return False
            except redis.RedisError:
                return False
            finally:
                c.close()
        return True

    def primaries(self) -> list[Server]:
        """Live nodes that are primaries now."""
        out = []
        for n in self.live():
            c = n.client()
            try:
                if c.info("replication").get("role") == "master":
                    out.append(n)
            finally:
                c.close()
        return out

    def replica_of(self, primary: Server) -> Server:
        c = primary.client()
        try:
            info = c.info("replication")
        finally:
            c.close()
        port = int(info["slave0"]["port"]) if isinstance(info.get("slave0"), dict) else None
        for n in self.nodes:
            if n.port == port:
                return n
        raise RuntimeError(f"no replica for {primary.address}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_cpu(servers: Sequence[Server]) -> float:
    """used_cpu_sys + used_cpu_user summed over the live servers (INFO CPU)."""
    total = 0.0
    for s in servers:
        if s.proc is None or s.proc.poll() is not None:
            continue
        c = s.client()
        try:
            info = c.info("cpu")
            total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        finally:
            c.close()
    return total
