"""A local Redis Cluster for the cluster-store rows: three masters and no replicas (replicas only
matter once a master fails, which the bench does not measure), on this machine's cores."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from benchmark import servers

MASTERS = 3


def start(work: Path, started: dict[str, servers.Server], notes: list[str]) -> str | None:
    """The store URL of a new cluster, its nodes added to `started`; None where it cannot run."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        notes.append("redis-server or redis-cli not installed: no Redis Cluster rows")
        return None
    ports = []
    for i in range(MASTERS):
        port = servers.free_port()
        folder = work / f"cluster{i}"
        folder.mkdir()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(folder), "--maxmemory", "256mb",
                   "--maxmemory-policy", "allkeys-lru", "--cluster-enabled", "yes",
                   "--cluster-port", str(servers.free_port())]
        try:
            started[f"cluster{i}"] = servers.Server(f"cluster{i}", command, port, work).start()
        except RuntimeError as e:
            notes.append(f"cluster node did not start: {e}")
            return None
        ports.append(port)
    created = subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
         "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
    if created.returncode != 0 or not _ready(ports):
        notes.append(f"redis-cli --cluster create failed: {created.stdout.strip()[-300:]}")
        return None
    notes.append(f"Redis Cluster rows: {MASTERS} masters of this redis-server, no replicas, "
                 "allkeys-lru, same cores")
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _ready(ports: list[int], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                 capture_output=True, text=True).stdout for p in ports]
        if all("cluster_state:ok" in state for state in states):
            return True
        time.sleep(0.1)
    return False
