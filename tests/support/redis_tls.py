"""Redis over TLS for the tests, with an ACL user, on the test certificates (support/certs.py):
one TLS redis-server, a TLS Redis Cluster (no replicas) and a TLS Sentinel (one sentinel with its
own password, one master). Every server listens on its TLS port only (`--port 0`)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from caching_proxy.store.redis.keys import CHANGES
from support.certs import Certs
from support.origin import free_port
from support.redis_cluster import wait_for
from support.redis_server import STORE_ARGS

USER, PASSWORD = "proxy", "s3cret-pw"  # the data nodes' ACL user
SENTINEL_PASSWORD = "sentinel-pw"
# The ACL user: every key, every channel, every command.
ACL_USER = ("--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all")


def require_tls_redis() -> None:
    """Skip the calling test without redis-server and redis-cli (Debian's are built with TLS)."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed; scripts/test installs it with apt where it can")


def tls_args(certs: Certs) -> list[str]:
    return ["--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
            "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no"]


def tls_client(certs: Certs, port: int, **auth: str) -> redis.Redis:
    """An admin client over TLS (`auth`: username= and password=, if the server needs them)."""
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), socket_timeout=2,
                       socket_connect_timeout=2, **auth)  # type: ignore[arg-type]


class TlsRedisServer:
    """One redis-server on its TLS port only. `args` after the TLS ones (a node's, an ACL
    user); `config` a file read first (a sentinel's, which it rewrites)."""

    def __init__(self, folder: Path, certs: Certs, args: Sequence[str] = (),
                 config: Path | None = None, auth: dict[str, str] | None = None) -> None:
        self.folder, self.certs, self.args, self.config = folder, certs, list(args), config
        self.port = free_port()
        self.auth = auth if auth is not None else {"username": USER, "password": PASSWORD}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> TlsRedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = [str(self.config)] if self.config is not None else []
        log = self.folder / "redis.log"  # what it said, for the error if it does not start
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["redis-server", *config, "--port", "0", "--tls-port", str(self.port),
                 "--bind", "127.0.0.1", "--dir", str(self.folder), *tls_args(self.certs),
                 *self.args],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        client = self.client()
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        said = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"redis-server over TLS on port {self.port} did not start within "
                           f"{timeout:g} s: " + " | ".join(said))

    def client(self) -> redis.Redis:
        return tls_client(self.certs, self.port, **self.auth)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def wait_listening(servers: Sequence[TlsRedisServer], timeout: float = 10) -> None:
    """Until something listens to the store's change channel on each of `servers`: a proxy's
    memory tier (it serves nothing from memory before), subscribed from threads of its own."""
    wait_for("a subscriber on each server", lambda: all(
        int(server.client().pubsub_numsub(CHANGES)[0][1]) > 0 for server in servers), timeout)


class TlsCluster:
    """`masters` masters over TLS (cluster bus too), no replicas, the ACL user on each."""

    def __init__(self, folder: Path, certs: Certs, masters: int = 3) -> None:
        self.certs = certs
        self.nodes = [TlsRedisServer(folder / f"node{i}", certs, [
            *STORE_ARGS, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port()), "--tls-cluster", "yes", *ACL_USER])
            for i in range(masters)]

    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 20) -> TlsCluster:
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                ["redis-cli", "--tls", "--cacert", str(self.certs.ca), "--user", USER,
                 "--pass", PASSWORD, "--no-auth-warning", "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
            wait_for("a ready cluster", lambda: all(
                n.client().execute_command("CLUSTER INFO").get("cluster_state") == "ok"
                for n in self.nodes), timeout)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class TlsSentinel:
    """A master over TLS with the ACL user, and one sentinel over TLS (it talks TLS to the master
    too: `tls-replication yes`) with a password of its own, watching it as `service`."""

    def __init__(self, folder: Path, certs: Certs, service: str = "cache") -> None:
        self.service = service
        self.master = TlsRedisServer(folder / "master", certs, [*STORE_ARGS, *ACL_USER])
        config = folder / "sentinel.conf"
        self.sentinel = TlsRedisServer(
            folder / "sentinel", certs, ["--sentinel", "--tls-replication", "yes",
                                         "--requirepass", SENTINEL_PASSWORD],
            config=config, auth={"password": SENTINEL_PASSWORD})
        self.config = config

    def start(self, timeout: float = 10) -> TlsSentinel:
        try:
            self.master.start()
            self.config.parent.mkdir(parents=True, exist_ok=True)
            self.config.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel auth-user {self.service} {USER}\n"
                f"sentinel auth-pass {self.service} {PASSWORD}\n")
            self.sentinel.start()
            wait_for("a sentinel that sees its master", self._sees_master, timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _sees_master(self) -> bool:
        state = self.sentinel.client().execute_command("SENTINEL", "MASTER", self.service)
        fields = dict(zip(state[::2], state[1::2], strict=True))
        return b"disconnected" not in fields[b"flags"] and b"s_down" not in fields[b"flags"]

    def stop(self) -> None:
        self.sentinel.stop()
        self.master.stop()
