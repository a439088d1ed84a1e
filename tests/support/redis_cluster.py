"""Real Redis Cluster and Sentinel setups for the tests, from Debian's redis-server and
redis-cli, on 127.0.0.1: started in temp folders, ready once every node says so, and a master
killed (SIGKILL) to watch a replica take over."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from support.origin import free_port
from support.polling import wait_until
from support.redis_server import STORE_ARGS, RedisServer

# A master syncs a new replica at once (Redis waits 5 s for more replicas to share the sync).
SYNC_AT_ONCE = ("--repl-diskless-sync-delay", "0")
LOG_NAME = "redis.log"


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of the file at `path`; none when it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def require_redis_tools() -> None:
    """Skip the calling test where Debian's redis-server and redis-cli are missing."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed; scripts/test installs it with apt where it can")


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Until `check()`, a Redis error counting as "not yet" (a server still starting)."""
    wait_until(check, timeout, what, interval=0.05, ignore=(redis.RedisError,))


def admin(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


def info(port: int, section: str) -> dict[str, object]:
    parsed: dict[str, object] = admin(port).info(section)
    return parsed


class LocalCluster:
    """`masters` masters, each with `replicas` replicas; nodes time out after `node_timeout`
    ms, so a killed master's replica is promoted within a few seconds."""

    def __init__(self, folder: Path, masters: int = 3, replicas: int = 1,
                 node_timeout: int = 1000) -> None:
        self.masters, self.replicas = masters, replicas
        self.nodes = [RedisServer(folder / f"node{i}", args=[
            *STORE_ARGS, *SYNC_AT_ONCE, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout), "--cluster-port", str(free_port()),
            "--logfile", str(folder / f"node{i}" / LOG_NAME)])
            for i in range(masters * (1 + replicas))]

    def logs(self, lines: int = 12) -> str:
        """The last lines each node logged (elections, failovers, replication), for a failed
        test's message."""
        return "".join(
            f"\nnode {n.port} logged:\n" + "\n".join(tail(n.folder / LOG_NAME, lines))
            for n in self.nodes)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def start(self, timeout: float = 30) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:  # the nodes already started are not left running
            self.stop()
            raise
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout)
        if created.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until every live node says the cluster is ok, agrees on each slot's master, and each
        replica's link to its master is up (so that it can take over)."""
        def ready() -> bool:
            nodes = self.alive()
            if not all(info_cluster(n.port).get("cluster_state") == "ok" for n in nodes):
                return False
            maps = {tuple(sorted(slot_map(n.port).items())) for n in nodes}
            replicas = [n for n in nodes if info(n.port, "replication")["role"] == "slave"]
            return len(maps) == 1 and all(
                info(n.port, "replication").get("master_link_status") == "up" for n in replicas)

        wait_for("a ready cluster", ready, timeout)

    def slots(self) -> dict[tuple[int, int], int]:
        """The slot map as the first live node sees it (see `slot_map`)."""
        return slot_map(self.alive()[0].port)

    def master_of(self, key: str, slots: dict[tuple[int, int], int] | None = None) -> int:
        """The port of the master that holds `key`'s slot (in `slots`, else as now)."""
        slot = key_slot(key.encode())
        for (low, high), port in (slots or self.slots()).items():
            if low <= slot <= high:
                return port
        raise LookupError(slot)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def kill(self, port: int) -> None:
        self.node(port).kill()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def wait_subscribed(ports: list[int], count: int, timeout: float = 10) -> None:
    """Until `count` clients listen to the store's change channel on the servers at `ports`
    (proxies' memory tiers, which serve nothing from memory before)."""
    from caching_proxy.store.redis.keys import CHANGES

    def subscribed() -> bool:
        return sum(int(admin(port).pubsub_numsub(CHANGES)[0][1]) for port in ports) >= count

    wait_for(f"{count} subscribers", subscribed, timeout)


def info_cluster(port: int) -> dict[str, str]:
    parsed: dict[str, str] = admin(port).execute_command("CLUSTER INFO")  # redis-py parses it
    return parsed


def slot_map(port: int) -> dict[tuple[int, int], int]:
    """(first slot, last slot): master port, from CLUSTER SLOTS on the node at `port`."""
    return {(int(entry[0]), int(entry[1])): int(entry[2][1])
            for entry in admin(port).execute_command("CLUSTER SLOTS")}


class LocalSentinel:
    """A master, its replica, and three sentinels watching them (quorum 2), which promote the
    replica about a second after the master stops answering."""

    def __init__(self, folder: Path, service: str = "cache", down_after: int = 500) -> None:
        self.folder, self.service, self.down_after = folder, service, down_after
        self.master = RedisServer(folder / "master", args=[*STORE_ARGS, *SYNC_AT_ONCE])
        self.replica = RedisServer(folder / "replica", args=[*STORE_ARGS, *SYNC_AT_ONCE])
        self.replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels = [RedisServer(folder / f"sentinel{i}", config=folder / f"sentinel{i}.conf",
                                      args=["--sentinel"]) for i in range(3)]

    @property
    def url(self) -> str:
        return ("redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
                + f"/{self.service}/0")

    def start(self, timeout: float = 30) -> LocalSentinel:
        self.master.start()
        self.replica.start()
        try:
            wait_for("a replica in sync", lambda: info(
                self.replica.port, "replication").get("master_link_status") == "up", timeout)
            for sentinel in self.sentinels:
                assert sentinel.config is not None
                sentinel.config.write_text(
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after}\n"
                    f"sentinel failover-timeout {self.service} 2000\n"
                    f"sentinel parallel-syncs {self.service} 1\n")
                sentinel.start()
            wait_for("sentinels that know each other and the replica", self._watching, timeout)
        except (RuntimeError, AssertionError):
            self.stop()
            raise
        return self

    def _watching(self) -> bool:
        for sentinel in self.sentinels:
            state = admin(sentinel.port).execute_command("SENTINEL", "MASTER", self.service)
            fields = dict(zip(state[::2], state[1::2], strict=True))
            if (fields[b"num-slaves"], fields[b"num-other-sentinels"]) != (b"1", b"2"):
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the first live sentinel names it."""
        _, port = admin(self.sentinels[0].port).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()
