"""scripts/bench: measures caching-proxy against mitmdump, nginx's cache and a naive Flask cache.

Everything runs on this machine in one go: an origin (nginx, or a Python stand-in), plain
`mitmdump --mode reverse:ORIGIN` with no addon (its flow log goes to a file), caching-proxy
processes with their own stores (one on uvloop where it is installed), nginx's proxy_cache with
one worker (where nginx is installed), a bare asyncio server answering one prepared response (on
asyncio's loop and on uvloop), and the naive Flask cache under Flask's development server and
under gunicorn. Rows are measured round-robin (round 1 of every row, then round 2, ...) so that a
slow spell on the machine touches every row alike; each row reports the median of its rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmark import cluster, loadgen, origin, servers, tag_purge
from benchmark.loadgen import Load, Result

SCRIPTS = Path(__file__).resolve().parent.parent
ROOT = SCRIPTS.parent
BIN = Path(sys.executable).parent
SMALL_KEYS = 10  # entries in the small stores
NOT_CACHES = frozenset({"origin", "mitmdump", "bare", "bare-uvloop"})  # no X-Cache: no HIT %
WARM_UP = 1_000  # misses before the RSS baseline of the large-store proxy
WARM = f"after {WARM_UP:,} warm-up misses"
# The large-store proxy's --memory-size: none (diskcache's default), so its RSS growth has no
# tier to allow for. With a tier, set both.
FULL_MEMORY_SIZE = "0"
FULL_TIER_KIB = 0  # the same, in the KiB /proc reports
# A second large-store proxy, with a memory tier, taking the same misses and reads into a store
# of its own: what the tier adds to the RSS of reads spread over a store larger than it (issue
# 17: bounded by --memory-size).
FULLMEM_TIER_MIB = 64
FULLMEM_MEMORY_SIZE = f"{FULLMEM_TIER_MIB}m"
TAG_PURGE = "tagpurge"  # --only key of the tag purge measurement (benchmark/tag_purge.py)


@dataclass(frozen=True)
class Row:
    key: str  # named by targets()
    label: str
    target: str  # a Server's name
    load: Load
    size: str  # "1 KB" or "44 KB": the mitmdump row it is compared with


@dataclass
class Measured:
    row: Row
    results: list[Result] = field(default_factory=list)
    skipped: str = ""

    def median(self, value: Callable[[Result], float]) -> float:
        return statistics.median(value(r) for r in self.results)

    @property
    def rate(self) -> float:
        return self.median(lambda r: r.rate) if self.results else 0.0


@dataclass(frozen=True)
class Settings:
    runs: int
    seconds: int  # wrk takes whole seconds
    warmup: int
    entries: int
    use_wrk: bool
    threads: int
    connections: int


def rows(entries: int) -> list[Row]:
    return [
        Row("origin", "origin directly", "origin", Load("fixed", "/b1k/x"), "1 KB"),
        Row("mitmdump1k", "plain mitmdump pass-through", "mitmdump", Load("fixed", "/b1k/x"),
            "1 KB"),
        Row("mitmdump44k", "plain mitmdump pass-through", "mitmdump", Load("fixed", "/b44k/x"),
            "44 KB"),
        Row("ceiling", "mitmproxy's bound: the lean master answering from one prepared response "
            "(no cache)", "ceiling", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        # Issue 31's references, measured in the same rounds: what Python answers at most here,
        # and nginx's cache.
        Row("bare", "bare asyncio server: one prepared response, no HTTP parsing (no cache)",
            "bare", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("bareuv", "bare asyncio server on uvloop (no cache)", "bare-uvloop",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        # nginx logs nothing; the caching-proxy rows write an access log line per request.
        Row("nginx1k", f"nginx proxy_cache hit, 1 worker, access_log off, {SMALL_KEYS} entries",
            "nginx-cache", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("nginx44k", "nginx proxy_cache hit, 1 worker, access_log off, 1 URL", "nginx-cache",
            Load("fixed", "/b44k/x"), "44 KB"),
        Row("hit1k", f"caching-proxy hit, {SMALL_KEYS} entries", "proxy",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hituv", f"caching-proxy on uvloop hit, {SMALL_KEYS} entries", "proxy-uvloop",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitnolane", f"caching-proxy --no-hit-lane hit, {SMALL_KEYS} entries (every hit "
            "through mitmproxy's layers)", "proxy-nolane", Load("random", "/b1k/h", SMALL_KEYS),
            "1 KB"),
        Row("hitscript", f"caching-proxy -s (a no-op script's request and response hooks) hit, "
            f"{SMALL_KEYS} entries", "proxy-script", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitbudget", f"caching-proxy hit, {SMALL_KEYS} entries, --origin-rate 5/s "
            "--origin-concurrency 4 (the origin budget on)", "proxy-budget",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitmem", f"caching-proxy hit, {SMALL_KEYS} entries, --memory-size 64m",
            "proxy-mem", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitnomem", f"caching-proxy hit, {SMALL_KEYS} entries, --memory-size 0 (no memory "
            "tier)", "proxy-nomem", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hittagged", f"caching-proxy hit, {SMALL_KEYS} tagged entries (Surrogate-Key)",
            "proxy", Load("random", "/t1k/h", SMALL_KEYS), "1 KB"),
        Row("hit44k", "caching-proxy hit, 1 URL", "proxy", Load("fixed", "/b44k/x"), "44 KB"),
        Row("range10m", "caching-proxy 206: 64 KiB range of a stored 10 MiB object", "proxy",
            Load("fixed", "/b10m/x", header="Range: bytes=5242880-5308415"), "64 KB"),
        Row("hitgzip", "caching-proxy hit, gzip variant to a gzip client", "proxy",
            Load("fixed", "/gz1k/x", header="Accept-Encoding: gzip"), "1 KB"),
        Row("hitdecoded", "caching-proxy hit, gzip variant decoded for an identity client",
            "proxy", Load("fixed", "/gz1k/x"), "1 KB"),
        Row("hitfull", f"caching-proxy hit, {entries:,} entries", "proxy-full",
            Load("random", "/b1k/f", entries), "1 KB"),
        # The same large store, read on 10 of its entries: tells the store's size apart from
        # the spread of the reads over it.
        Row("hitfull10", f"caching-proxy hit, {SMALL_KEYS} of the {entries:,} entries",
            "proxy-full", Load("random", "/b1k/f", SMALL_KEYS), "1 KB"),
        Row("hitfullmem", f"caching-proxy hit, {entries:,} entries, --memory-size "
            f"{FULLMEM_MEMORY_SIZE}", "proxy-fullmem", Load("random", "/b1k/f", entries), "1 KB"),
        Row("miss", "caching-proxy miss: a new URL every request (stored)", "proxy-miss",
            Load("unique", "/b1k/m"), "1 KB"),
        Row("nostore", "caching-proxy miss: no-store response (not stored)", "proxy-miss",
            Load("fixed", "/nostore/x"), "1 KB"),
        Row("workers2", f"caching-proxy --workers 2 hit, {SMALL_KEYS} entries", "proxy-workers2",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("workers2nolane", f"caching-proxy --workers 2 --no-hit-lane hit, {SMALL_KEYS} "
            "entries", "proxy-workers2-nolane", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("redis1", f"caching-proxy --store redis hit, {SMALL_KEYS} entries", "proxy-redis",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("redisnomem", f"caching-proxy --store redis --memory-size 0 hit, {SMALL_KEYS} entries",
            "proxy-redis-nomem", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("redismiss", "caching-proxy --store redis miss: a new URL every request (stored)",
            "proxy-redis", Load("unique", "/b1k/rm"), "1 KB"),
        Row("redis2", f"caching-proxy --store redis --workers 2 hit, {SMALL_KEYS} entries",
            "proxy-redis2", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitcluster", f"caching-proxy --store redis+cluster (3 masters) hit, {SMALL_KEYS} "
            "entries", "proxy-cluster", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("clusternomem", "caching-proxy --store redis+cluster --memory-size 0 hit, "
            f"{SMALL_KEYS} entries", "proxy-cluster-nomem", Load("random", "/b1k/h", SMALL_KEYS),
            "1 KB"),
        Row("flaskdev", "naive Flask cache, Flask dev server", "flask-dev",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("gunicorn1", "naive Flask cache, gunicorn -w 1", "flask-gunicorn1",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("gunicorn", "naive Flask cache, gunicorn -w 2", "flask-gunicorn",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        # --compare REF: the same hit and miss rows on the checkout REF, in the same rounds.
        Row("hit1k-base", f"previous checkout hit, {SMALL_KEYS} entries", "base-proxy",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("hitmem-base", f"previous checkout hit, {SMALL_KEYS} entries, --memory-size 64m",
            "base-proxy-mem", Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
        Row("miss-base", "previous checkout miss: a new URL every request (stored)",
            "base-proxy-miss", Load("unique", "/b1k/m"), "1 KB"),
        Row("redismiss-base", "previous checkout --store redis miss: a new URL every request",
            "base-proxy-redis", Load("unique", "/b1k/brm"), "1 KB"),
        Row("redisnomem-base", "previous checkout --store redis --memory-size 0 hit, "
            f"{SMALL_KEYS} entries", "base-proxy-redis-nomem",
            Load("random", "/b1k/h", SMALL_KEYS), "1 KB"),
    ]


# -- the machine and the versions -------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def command_output(command: list[str]) -> str:
    """What `command` printed (nginx -v writes to stderr), or "" when it failed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30)
    except OSError:
        return ""
    return (done.stdout + done.stderr).strip() if done.returncode == 0 else ""


def header(settings: Settings, origin_kind: str) -> list[str]:
    from mitmproxy.version import VERSION as MITMPROXY

    commit = command_output(["git", "describe", "--always", "--dirty"]) or "(no commit)"
    load = (f"wrk {loadgen.wrk_version()}, {settings.threads} threads" if settings.use_wrk
            else "Python load generator (not wrk; it takes more of the shared CPU than wrk)")
    return [
        f"caching-proxy benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"caching-proxy {commit}",
        f"machine: {os.cpu_count()} cores ({cpu_model()}), {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; mitmproxy {MITMPROXY}",
        f"origin: {origin_kind}; load: {load}, {settings.connections} connections, "
        f"{settings.seconds:g} s per run after {settings.warmup:g} s warm-up, median of "
        f"{settings.runs} run(s) per row, rows interleaved; origin, proxy and load generator "
        "share the cores",
    ]


# -- the servers ------------------------------------------------------------------------------


# The proxy as `python -m caching_proxy`, which the previous checkout's package (on PYTHONPATH
# for the base-* rows) answers as well, whatever its layout; the console script names one module.
PROXY = [str(BIN / "python"), "-O", "-m", "caching_proxy"]


def has_workers_option() -> bool:
    return "--workers" in command_output([*PROXY, "--help"])


def has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


# Why a row's server is missing, where it is not a failure to start (those are in the notes).
NOT_THERE = {
    "proxy-workers2": "no --workers option in caching-proxy --help yet",
    "nginx-cache": "nginx not installed",
    "bare-uvloop": "uvloop not installed",
    "proxy-uvloop": "uvloop not installed",
}


def base_checkout(work: Path, ref: str) -> Path:
    """A worktree of `ref` in the work folder, whose addons the base-* proxies import."""
    path = work / "base"
    done = subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), ref],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot check out {ref}: {done.stderr.strip()}")
    return path


def server_commands(
    work: Path, origin_url: str, redis_url: str | None, base: Path | None = None,
    cluster_url: str | None = None,
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """NAME: (command with {port}, extra environment) of every server but the origin."""
    def proxy(name: str, *extra: str) -> list[str]:
        return [*PROXY, "--port", "{port}", "--origin", origin_url,
                "--cache-dir", str(work / f"cache-{name}"), *extra]

    naive = {"NAIVE_ORIGIN": origin_url}
    commands = {
        "mitmdump": ([str(BIN / "mitmdump"), "--mode", f"reverse:{origin_url}",
                      "--listen-host", "127.0.0.1", "--listen-port", "{port}"], {}),
        "proxy": (proxy("proxy"), {}),
        "ceiling": ([sys.executable, "-O", "-m", "benchmark.ceiling", "--port", "{port}",
                     "--origin", origin_url], {}),
        "bare": ([sys.executable, "-O", "-m", "benchmark.bare", "--port", "{port}"], {}),
        "proxy-nolane": (proxy("nolane", "--no-hit-lane"), {}),
        "proxy-script": (proxy("script", "-s", str(SCRIPTS / "benchmark" / "noop_script.py")), {}),
        "proxy-budget": (proxy("budget", "--origin-rate", "5/s", "--origin-concurrency", "4"), {}),
        "proxy-full": (proxy("full", "--memory-size", FULL_MEMORY_SIZE), {}),
        "proxy-fullmem": (proxy("fullmem", "--memory-size", FULLMEM_MEMORY_SIZE), {}),
        "proxy-miss": (proxy("miss"), {}),
        "proxy-mem": (proxy("mem", "--memory-size", "64m"), {}),
        "proxy-nomem": (proxy("nomem", "--memory-size", "0"), {}),
        "flask-dev": ([sys.executable, "-m", "benchmark.naive_flask", "--port", "{port}"], naive),
        "flask-gunicorn": ([str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}",
                            "--pythonpath", str(SCRIPTS), "benchmark.naive_flask:app"], naive),
        "flask-gunicorn1": ([str(BIN / "gunicorn"), "-w", "1", "-b", "127.0.0.1:{port}",
                             "--pythonpath", str(SCRIPTS), "benchmark.naive_flask:app"], naive),
    }
    if has_uvloop():
        commands["bare-uvloop"] = ([sys.executable, "-O", "-m", "benchmark.bare", "--uvloop",
                                    "--port", "{port}"], {})
        commands["proxy-uvloop"] = ([sys.executable, "-O", "-m", "benchmark.uvproxy",
                                     *proxy("uvloop")[len(PROXY):]], {})
    if origin.nginx_path() is not None:
        commands["nginx-cache"] = ([sys.executable, "-m", "benchmark.nginx_cache", "--port",
                                    "{port}", "--origin", origin_url, "--prefix",
                                    str(work / "nginx-cache")], {})
    if has_workers_option():
        commands["proxy-workers2"] = (proxy("workers2", "--workers", "2"), {})
        commands["proxy-workers2-nolane"] = (proxy("workers2-nolane", "--workers", "2",
                                                   "--no-hit-lane"), {})
    if redis_url is not None:
        commands["proxy-redis"] = (proxy("redis", "--store", redis_url), {})
        commands["proxy-redis-nomem"] = (proxy("redis-nomem", "--store", redis_url,
                                               "--memory-size", "0"), {})
        commands["proxy-redis2"] = (proxy("redis2", "--store", redis_url, "--workers", "2"), {})
    if cluster_url is not None:
        commands["proxy-cluster"] = (proxy("cluster", "--store", cluster_url), {})
        commands["proxy-cluster-nomem"] = (proxy("cluster-nomem", "--store", cluster_url,
                                                 "--memory-size", "0"), {})
    if base is not None:
        # The same console script, importing the other checkout's package first.
        old = {"PYTHONPATH": str(base / "addons")}
        commands["base-proxy"] = (proxy("base"), old)
        commands["base-proxy-miss"] = (proxy("base-miss"), old)
        commands["base-proxy-mem"] = (proxy("base-mem", "--memory-size", "64m"), old)
        if redis_url is not None:
            commands["base-proxy-redis"] = (proxy("base-redis", "--store", redis_url), old)
            commands["base-proxy-redis-nomem"] = (proxy("base-redis-nomem", "--store", redis_url,
                                                        "--memory-size", "0"), old)
    return commands


def start_origin(work: Path) -> tuple[servers.Server, str]:
    port = servers.free_port()
    command = origin.nginx_command(work / "nginx", port)
    if command is not None:
        kind = command_output([command[0], "-v"]).replace("nginx version: ", "") + ", 1 worker"
    else:
        command = [sys.executable, "-m", "benchmark.origin", "--port", str(port)]
        kind = "Python asyncio server (nginx not installed)"
    server = servers.Server("origin", command, port, work).start()
    status, _ = servers.get(port, "/b1k/x")
    if status != 200:
        server.stop()
        raise RuntimeError(f"origin answered {status} for /b1k/x: {server.log_tail()}")
    return server, kind


def start_redis(work: Path, started: dict[str, servers.Server], notes: list[str]) -> str | None:
    """A local redis-server for the Redis-store rows, if one is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        notes.append("redis-server not installed: no Redis rows")
        return None
    port = servers.free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "no", "--dir", str(work), "--maxmemory", "256mb", "--maxmemory-policy",
               "allkeys-lru"]
    try:
        started["redis"] = servers.Server("redis", command, port, work).start()
    except RuntimeError as e:
        notes.append(f"redis did not start: {e}")
        return None
    version = command_output([binary, "--version"]).split(" ")[2:3]
    notes.append(f"Redis store rows: redis-server {''.join(version)} on this machine, "
                 "allkeys-lru, same cores")
    return f"redis://127.0.0.1:{port}/0"


def start_all(
    work: Path, origin_url: str, redis_url: str | None, notes: list[str],
    base: Path | None = None, wanted: set[str] | None = None, cluster_url: str | None = None,
) -> dict[str, servers.Server]:
    started: dict[str, servers.Server] = {}
    commands = server_commands(work, origin_url, redis_url, base, cluster_url)
    for name, (command, env) in commands.items():
        if wanted is not None and name not in wanted:
            continue
        port = servers.free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        try:
            started[name] = servers.Server(name, command, port, work, env).start()
        except RuntimeError as e:
            notes.append(f"{name} did not start: {e}")
    return started


def prefill(started: dict[str, servers.Server], notes: list[str]) -> None:
    """Stores the small sets; a second request for one URL must then be a HIT."""
    paths = [f"/b1k/h{i}" for i in range(SMALL_KEYS)] + ["/b44k/x"] + [
        f"/t1k/h{i}" for i in range(SMALL_KEYS)]
    for name in ("proxy", "proxy-uvloop", "nginx-cache", "proxy-nolane", "proxy-budget",
                 "proxy-mem", "proxy-nomem", "proxy-workers2", "proxy-workers2-nolane",
                 "proxy-redis", "proxy-redis-nomem", "proxy-redis2",
                 "proxy-cluster", "proxy-cluster-nomem", "base-proxy", "base-proxy-mem",
                 "base-proxy-redis-nomem",
                 "flask-dev", "flask-gunicorn", "flask-gunicorn1"):
        server = started.get(name)
        if server is None:
            continue
        # gunicorn's workers each keep their own dict: ask often enough to reach both.
        answers = [servers.get(server.port, path) for _ in range(4) for path in paths]
        if name == "proxy":  # the range and decoding rows' objects
            for _ in range(2):
                servers.get(server.port, "/b10m/x")
                servers.get(server.port, "/gz1k/x", {"Accept-Encoding": "gzip"})
        if name.startswith(("proxy", "nginx")):
            first, again = answers[0], answers[len(paths)]
            notes.append(f"{name}: GET /b1k/h0 answered {first[0]} X-Cache: {first[1] or '-'}, "
                         f"then {again[0]} X-Cache: {again[1] or '-'}")


# -- measuring --------------------------------------------------------------------------------


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs = 0  # numbers the prefixes of `unique` loads, so no URL repeats across runs

    def run(self, server: servers.Server, load: Load, seconds: int) -> Result:
        self.runs += 1
        if load.mode == "unique":
            load = Load(load.mode, f"{load.prefix}{self.runs}-")
        s = self.settings
        return loadgen.run(server.url, load, seconds, use_wrk=s.use_wrk, threads=s.threads,
                           connections=s.connections)

    def measure(self, server: servers.Server, load: Load) -> Result:
        if self.settings.warmup > 0:
            self.run(server, load, self.settings.warmup)
        return self.run(server, load, self.settings.seconds)

    def walk(self, server: servers.Server, prefix: str, count: int) -> Result:
        """GET PREFIX0 .. PREFIX{count-1}, each once (give or take the requests in flight when
        the generator stops)."""
        # Long enough for a slow miss path; a walk ends at its limit, not at this bound.
        return self.run(server, Load("walk", prefix, limit=count), max(600, count // 50))


def measure_rows(runner: Runner, started: dict[str, servers.Server],
                 only: set[str] | None = None) -> list[Measured]:
    measured = [Measured(row) for row in rows(runner.settings.entries)
                if (only is None or row.key in only)
                and (row.target.startswith("base-") <= (row.target in started))]
    for m in measured:
        if m.row.target not in started:
            m.skipped = NOT_THERE.get(m.row.target, f"{m.row.target} not running")
    runs = runner.settings.runs
    for round_ in range(runs):
        # Every other round in reverse: a row measured right after another (a warmer origin,
        # the other proxy's leftover work) is not always the same row. An A/A run (this
        # checkout against itself) measured 0.94x-0.95x in a fixed order.
        for m in measured if round_ % 2 == 0 else measured[::-1]:
            if m.skipped:
                continue
            result = runner.measure(started[m.row.target], m.row.load)
            m.results.append(result)
            progress(f"round {round_ + 1}/{runs}: {m.row.label}: {describe(result)}")
    return measured


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(result: Result) -> str:
    return (f"{result.rate:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"{result.hits:,} hits of {result.responses:,}")


# -- the report -------------------------------------------------------------------------------


def ratio(value: float, base: float) -> float:
    return value / base if base else 0.0


def table(measured: list[Measured]) -> list[str]:
    base = {m.row.size: m.rate for m in measured if m.row.target == "mitmdump" and m.results}
    lines = [
        "| case | body | req/s | p50 ms | p99 ms | vs mitmdump | runs (req/s) | HIT % | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for m in measured:
        if not m.results:
            lines.append(f"| {m.row.label} | {m.row.size} | skipped: {m.skipped} |"
                         " | | | | | |")
            continue
        responses = sum(r.responses for r in m.results)
        hits = (f"{100 * sum(r.hits for r in m.results) / responses:.0f}"
                if responses and m.row.target not in NOT_CACHES else "-")
        errors = sum(r.errors + r.non200 for r in m.results)
        runs = " / ".join(f"{r.rate:,.0f}" for r in m.results)
        vs = ratio(m.rate, base.get(m.row.size, 0.0))
        lines.append(
            f"| {m.row.label} | {m.row.size} | {m.rate:,.0f} | {m.median(lambda r: r.p50_ms):.1f}"
            f" | {m.median(lambda r: r.p99_ms):.1f} | {vs:.2f}x | {runs} | {hits} | {errors} |"
        )
    return lines


# Rows compared with the previous checkout (--compare), each with its own baseline row.
PAIRED = ("hit1k", "hitmem", "miss", "redismiss", "redisnomem")


def paired(measured: list[Measured]) -> list[str]:
    """Each --compare row against its baseline round by round: the two runs of a round are
    next to each other in time, so their ratio is less moved by this machine's drift (other
    tenants, CPU steal) than the ratio of the two medians."""
    by_key = {m.row.key: m.results for m in measured if m.results}
    lines = []
    for key in PAIRED:
        mine, base = by_key.get(key), by_key.get(f"{key}-base")
        if not mine or not base or len(mine) != len(base):
            continue
        ratios = [a.rate / b.rate for a, b in zip(mine, base, strict=True) if b.rate]
        if ratios:
            lines.append(f"{key} vs {key}-base, round by round: "
                         f"{' / '.join(f'{x:.2f}' for x in ratios)}x; median "
                         f"{statistics.median(ratios):.3f}x")
    return lines


class LargeStore:
    """A proxy whose store is filled through it (`entries` misses, after WARM_UP misses on other
    URLs: its first requests import code and fill SQLite's bounded page cache, growth that
    happens once, not per request), then read by the rows and walked again at the end: its RSS
    at each stage, for the growth over requests that store and over as many hits."""

    def __init__(self, server: servers.Server, runner: Runner, entries: int) -> None:
        self.server, self.runner, self.entries = server, runner, entries
        self.memory: dict[str, servers.Memory] = {"fresh": server.memory()}

    def fill(self) -> Result:
        self.runner.walk(self.server, "/b1k/w", WARM_UP)
        self.memory[WARM] = self.server.memory()
        done = self.runner.walk(self.server, "/b1k/f", self.entries)
        self.memory["filled"] = self.server.memory()
        return done

    def walk(self) -> Result:
        self.memory["before hit walk"] = self.server.memory()
        done = self.runner.walk(self.server, "/b1k/f", self.entries)
        self.memory["after hit walk"] = self.server.memory()
        return done


def percent_change(before: int, after: int) -> float:
    return 100 * (after - before) / before if before else 0.0


def targets(by_target: dict[str, float], growth: dict[str, float], entries: int) -> list[str]:
    """The issue's targets, checked against this run's numbers."""
    def check(name: str, value: float | None, goal: float, higher: bool, unit: str = "x") -> str:
        """unit "x": a ratio that must reach `goal` (higher) or stay under it; "%": a change;
        "MiB": a difference."""
        if value is None:
            return f"| {name} | not measured | |"
        met = value >= goal if higher else value < goal
        shown = {"%": f"{value:+.1f}%", "MiB": f"{value:+.1f} MiB"}.get(unit, f"{value:.3f}x")
        return f"| {name} | {shown} | {'yes' if met else 'NO'} |"

    def r(a: str, b: str) -> float | None:
        return by_target[a] / by_target[b] if by_target.get(a) and by_target.get(b) else None

    return [
        "| target | this run | met |",
        "| --- | ---: | --- |",
        check("hit 1 KB >= 2.5x plain mitmdump", r("hit1k", "mitmdump1k"), 2.5, True),
        check("hit 44 KB >= 2.5x plain mitmdump (44 KB)", r("hit44k", "mitmdump44k"), 2.5, True),
        check("miss (new URL) >= 0.9x plain mitmdump", r("miss", "mitmdump1k"), 0.9, True),
        check("miss (no-store) >= 0.9x plain mitmdump", r("nostore", "mitmdump1k"), 0.9, True),
        check("hit with many entries >= 0.9x hit with 10", r("hitfull", "hit1k"), 0.9, True),
        check("hit with tags stored >= 0.95x untagged", r("hittagged", "hit1k"), 0.95, True),
        check(f"hit with many entries, --memory-size {FULLMEM_MEMORY_SIZE}, vs without (no "
              f"target)", r("hitfullmem", "hitfull"), 0.0, True),
        check("memory tier on >= 1.15x off (diskcache)", r("hitmem", "hitnomem"), 1.15, True),
        check("memory tier on >= 1.15x off (Redis)", r("redis1", "redisnomem"), 1.15, True),
        check("hits decoded for identity clients vs plain gzip hits (no target)",
              r("hitdecoded", "hitgzip"), 0.0, True),
        check("Redis-store hits (memory tier) >= 0.9x diskcache-store hits",
              r("redis1", "hit1k"), 0.9, True),
        check(f"RSS growth over {entries:,} requests that store (misses) < 10%",
              growth.get("fill"), 10.0, False, "%"),
        check(f"RSS growth over {entries:,} later requests (hits), beyond the large store's "
              f"memory tier ({FULL_TIER_KIB // 1024} MiB), < 10%",
              growth.get("walk"), 10.0, False, "%"),
        check(f"RSS of the large-store proxy with --memory-size {FULLMEM_MEMORY_SIZE} minus "
              f"without, both after spread reads and a walk, <= {FULLMEM_TIER_MIB} MiB",
              growth.get("tier"), FULLMEM_TIER_MIB + 1e-9, False, "MiB"),
        check("--workers 2 >= 1.6x one worker", r("workers2", "hit1k"), 1.6, True),
        # Issue 31's targets: nginx's cache and a bare asyncio server, measured in this run.
        check("one worker hits >= nginx proxy_cache 1 worker (1 KB)", r("hit1k", "nginx1k"),
              1.0, True),
        check("one worker hits >= nginx proxy_cache 1 worker (44 KB)", r("hit44k", "nginx44k"),
              1.0, True),
        check("one worker hits >= 0.5x the bare asyncio server", r("hit1k", "bare"), 0.5, True),
        check("--workers 2 >= 1.5x one worker", r("workers2", "hit1k"), 1.5, True),
        check("hits on uvloop vs asyncio's loop, one worker (no target)", r("hituv", "hit1k"),
              0.0, True),
        check("bare server on uvloop vs asyncio's loop (no target)", r("bareuv", "bare"), 0.0,
              True),
        check("nginx proxy_cache vs the bare asyncio server (no target)", r("nginx1k", "bare"),
              0.0, True),
        check("one worker > naive Flask dev server", r("hit1k", "flaskdev"), 1.0, True),
        check("one worker > naive gunicorn -w 1", r("hit1k", "gunicorn1"), 1.0, True),
        check("--workers 2 > naive gunicorn -w 2", r("workers2", "gunicorn"), 1.0, True),
        # Issue 17's targets.
        check("one worker >= 4x plain mitmdump on hits", r("hit1k", "mitmdump1k"), 4.0, True),
        check("--workers 2 >= 1.25x naive gunicorn -w 2", r("workers2", "gunicorn"), 1.25, True),
        check("hit lane on vs off, one worker (no target)", r("hit1k", "hitnolane"), 0.0, True),
        # Issue 32: a hit under the origin budget costs what a hit without it costs.
        check("hit under --origin-rate >= 0.95x a hit without it", r("hitbudget", "hit1k"),
              0.95, True),
        check("hit lane on vs off, --workers 2 (no target)", r("workers2", "workers2nolane"),
              0.0, True),
        check("hit vs mitmproxy's bound, the lean master answering at once (no target)",
              r("hit1k", "ceiling"), 0.0, True),
        check("mitmproxy's bound vs plain mitmdump (no target)", r("ceiling", "mitmdump1k"),
              0.0, True),
        check("Redis Cluster hits (memory tier) vs one Redis (no target)",
              r("hitcluster", "redis1"), 0.0, True),
        check("Redis Cluster memory tier on vs off (no target)",
              r("hitcluster", "clusternomem"), 0.0, True),
        *([check("hit 1 KB >= 0.95x the previous checkout", r("hit1k", "hit1k-base"), 0.95, True),
           check("hit, --memory-size 64m, >= 0.95x the previous checkout",
                 r("hitmem", "hitmem-base"), 0.95, True),
           check("miss >= 0.95x the previous checkout", r("miss", "miss-base"), 0.95, True),
           check("Redis miss >= 0.95x the previous checkout", r("redismiss", "redismiss-base"),
                 0.95, True),
           check("Redis hit, no memory tier, >= 0.95x the previous checkout",
                 r("redisnomem", "redisnomem-base"), 0.95, True)]
          if "hit1k-base" in by_target else []),
    ]


# -- main -------------------------------------------------------------------------------------

FULL = {"runs": 3, "seconds": 5, "warmup": 1, "entries": 100_000}  # about 6 minutes here
QUICK = {"runs": 1, "seconds": 2, "warmup": 1, "entries": 5_000}  # about 45 seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, help="runs per row; the median is reported (default 3)")
    p.add_argument("--seconds", type=int, help="length of a run (default 5)")
    p.add_argument("--warmup", type=int, help="unmeasured load before each run (default 1)")
    p.add_argument("--entries", type=int,
                   help="entries stored for the large-store row and requests of the RSS walks "
                   "(default 100000)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test, about a minute: defaults of 1 run of 2 s per row and "
                   "5,000 entries")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator (default: wrk when installed)")
    p.add_argument("--compare", metavar="REF",
                   help="also measure the hit and miss rows on git checkout REF (e.g. HEAD~3 "
                   "or main), in the same rounds, and check this checkout against it")
    p.add_argument("--only", metavar="ROWS",
                   help="measure only these rows, comma separated (keys: " + ", ".join(
                       r.key for r in rows(0)) + f", {TAG_PURGE}); the servers they need are "
                   "started")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (stores, server logs) and print its path")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and loadgen.wrk_path() is not None)
    if use_wrk and loadgen.wrk_path() is None:
        print("scripts/bench: wrk is not installed", file=sys.stderr)
        return 2
    settings = Settings(args.runs, args.seconds, args.warmup, args.entries, use_wrk,
                        threads=2, connections=32)
    work = Path(tempfile.mkdtemp(prefix="caching-proxy-bench-"))
    work.chmod(0o755)  # nginx's worker process drops root privileges and reads its files here
    notes: list[str] = []
    started: dict[str, servers.Server] = {}
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        origin_server, origin_kind = start_origin(work)
        started["origin"] = origin_server
        lines = header(settings, origin_kind)
        progress("\n".join(lines))
        only = set(args.only.split(",")) if args.only else None
        unknown = sorted((only or set()) - {r.key for r in rows(0)} - {TAG_PURGE})
        if unknown:
            raise RuntimeError(f"unknown rows in --only: {', '.join(unknown)}")
        wanted = None if only is None else {r.target for r in rows(0) if r.key in only}
        if only is not None and TAG_PURGE in only:
            wanted = (wanted or set()) | {"redis"}
        base = base_checkout(work, args.compare) if args.compare else None
        if base is not None:
            notes.append(f"previous checkout: {args.compare} = " + command_output(
                ["git", "rev-parse", "--short", args.compare]))
        redis_url = (start_redis(work, started, notes)
                     if wanted is None or any("redis" in t for t in wanted) else None)
        cluster_url = (cluster.start(work, started, notes)
                       if wanted is None or any("cluster" in t for t in wanted) else None)
        started.update(start_all(work, origin_server.url, redis_url, notes, base, wanted,
                                 cluster_url))
        prefill(started, notes)
        runner = Runner(settings)
        # Each large-store proxy (LargeStore) is filled before the rows and walked after them.
        growth: dict[str, float] = {}
        large = {name: LargeStore(started[name], runner, settings.entries)
                 for name in ("proxy-full", "proxy-fullmem") if name in started}
        if only is not None and not only & {"hitfull", "hitfull10", "hitfullmem"}:
            large = {}
        for store in large.values():
            notes.append(f"{store.server.name}: store filled through the proxy with "
                         f"{settings.entries:,} misses: {describe(store.fill())}")
            progress(notes[-1])
        measured = measure_rows(runner, started, only)
        for store in large.values():
            notes.append(f"{store.server.name}: hit walk over the {settings.entries:,} stored "
                         f"URLs: {describe(store.walk())}")
            notes.append(f"{store.server.name}: RSS: " + "; ".join(
                f"{stage} {value}" for stage, value in store.memory.items()))
        if "proxy-full" in large:
            full = large["proxy-full"].memory
            growth["fill"] = percent_change(full[WARM].rss, full["filled"].rss)
            # A memory tier fills up to --memory-size by design: the growth is counted beyond
            # it (issue 17: RSS bounded by the tier plus today's figure).
            growth["walk"] = percent_change(full["before hit walk"].rss + FULL_TIER_KIB,
                                            full["after hit walk"].rss)
            if "proxy-fullmem" in large:
                # The same misses and reads through each, one with a tier.
                growth["tier"] = (large["proxy-fullmem"].memory["after hit walk"].rss
                                  - full["after hit walk"].rss) / 1024
        if "proxy" in started and any(m.row.key == "range10m" and m.results for m in measured):
            notes.append(f"RSS of the proxy (hit, range and decoding rows) after the rounds, "
                         f"32 clients reading 64 KiB ranges of a 10 MiB object among them: "
                         f"{started['proxy'].memory()}")
        purges: list[str] = []
        if only is None or TAG_PURGE in only:
            progress(f"tag purge: filling stores of 1,000 and {settings.entries:,} entries")
            purges = ["", *tag_purge.run(work, settings.entries, redis_url)]
            progress("\n".join(purges))
        rates = {m.row.key: m.rate for m in measured}
        if rates.get("hitfull10") and rates.get("hit1k") and rates.get("hitfull"):
            notes.append(
                f"the large store's size alone: {SMALL_KEYS} of its entries read at random "
                f"answer {rates['hitfull10'] / rates['hit1k']:.3f}x the {SMALL_KEYS}-entry "
                f"store; reads spread over all {settings.entries:,} answer "
                f"{rates['hitfull'] / rates['hitfull10']:.3f}x those {SMALL_KEYS}")
        notes.extend(paired(measured))
        print("\n".join([*lines, "", *table(measured), "",
                         *targets(rates, growth, settings.entries), *purges, "",
                         *(f"- {note}" for note in notes)]))
    except KeyboardInterrupt:
        print("scripts/bench: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(started.values()):
            server.stop()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if args.compare:
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
    return 0
