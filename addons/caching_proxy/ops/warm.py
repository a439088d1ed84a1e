"""`caching-proxy --warm FILE`: fetch a list of paths through a running proxy, so that its store
holds them before clients ask.

The list is a file of paths or URLs (one a line, blank lines and `#` comments skipped), a local
sitemap, or a sitemap on the origin given by its path (`--warm /sitemap.xml`; a sitemap index is
followed one level down). Every URL is requested at the proxy by its path and query (the proxy
forwards to its one origin), at most `--warm-concurrency` at once, and each answer's X-Cache and
Cache-Status say what happened: stored, already cached, not stored (and why), or an error.
Warming goes through a proxy, so what is stored is exactly what the proxy would store: the one
running at --host:--port, or, when none answers there and `--origin` is given, a private one
this command starts on a free loopback port with the same store and cache options (the same
policy, rules and store; stopped when warming ends).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass

from caching_proxy import __version__
from caching_proxy.ops.marks import own_params
from caching_proxy.ops.warm_sources import Answer, WarmError, load_targets
from caching_proxy.policy.freshness import HEURISTICALLY_CACHEABLE

# What a browser sends: the stored variant then serves browsers, and clients that accept no
# coding get it decoded (--encodings); with --encodings off, the variant of this exact field.
ACCEPT_ENCODING = "gzip, deflate, br, zstd"
TIMEOUT = 60.0
LISTED = 50  # not-stored and failed URLs printed in the summary (--json lists all)


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    verdict: str  # stored, cached (answered from the store), not stored, error
    status: int | None
    reason: str
    cache_status: str


def why_not_stored(answer: Answer, params: dict[str, str]) -> str:
    """Why an answer that went forward was not stored, read from its fields: Cache-Status
    names the forward reason, and what the origin sent names the rest."""
    fwd = params.get("fwd", "?")
    if fwd == "bypass":
        return "passed without a lookup (bypass: a never_cache rule or a request field)"
    if fwd in ("method", "request"):
        return f"passed (fwd={fwd})"
    control = (answer.header("cache-control") or "").lower()
    for directive in ("no-store", "private"):
        if directive in control:
            return f"Cache-Control: {directive}"
    if answer.header("set-cookie") is not None:
        return "Set-Cookie (see cache_set_cookie)"
    if (answer.header("vary") or "").strip() == "*":
        return "Vary: *"
    if answer.status in (206, 304) or answer.status < 200:
        return f"status {answer.status} is never stored"
    explicit = "max-age" in control or answer.header("expires") is not None
    if answer.status not in HEURISTICALLY_CACHEABLE and not explicit:
        return f"status {answer.status} without explicit freshness (max-age, Expires)"
    if "detail" in params:
        return f"detail={params['detail']}"
    return f"fwd={fwd}, not stored (too large for --max-object-size, or the store failed)"


def classify(target: str, answer: Answer) -> Result:
    values = answer.all("cache-status")
    shown = ", ".join(values)
    if answer.header("x-cache") is None:
        return Result(target, "error", answer.status,
                      "no X-Cache in the answer: is a caching-proxy listening there?", shown)
    params = own_params(values)
    if "hit" in params:
        return Result(target, "cached", answer.status, "already stored (HIT)", shown)
    if "stored" in params:
        return Result(target, "stored", answer.status, "stored", shown)
    if answer.status >= 500:
        return Result(target, "error", answer.status, f"status {answer.status}", shown)
    return Result(target, "not stored", answer.status, why_not_stored(answer, params), shown)


def unverified_context() -> ssl.SSLContext:
    """TLS without certificate or name checks (what ssl's private _create_unverified_context
    makes): for this proxy's own port only."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Client:
    """GETs on the proxy, a new connection each (the proxy's keep-alive is not the point)."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host, self.port = host, port
        # Our own proxy on this machine, its certificate made for other names: not verified.
        self.context = unverified_context() if tls else None

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.context else 'http'}://{host}:{self.port}"

    def check(self) -> None:
        """Raise OSError unless something accepts connections at the proxy's address."""
        socket.create_connection((self.host, self.port), timeout=5).close()

    def get(self, target: str) -> Answer:
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT,
                                        context=self.context)
            if self.context else http.client.HTTPConnection(self.host, self.port,
                                                             timeout=TIMEOUT))
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("Accept-Encoding", ACCEPT_ENCODING)
            conn.putheader("User-Agent", f"caching-proxy-warm/{__version__}")
            conn.endheaders()
            response = conn.getresponse()
            return Answer(response.status, list(response.getheaders()), response.read())
        finally:
            conn.close()

    def warm(self, target: str) -> Result:
        try:
            return classify(target, self.get(target))
        except (OSError, http.client.HTTPException) as e:
            return Result(target, "error", None, str(e) or type(e).__name__, "")


class Progress:
    """tqdm's bar on a terminal; elsewhere a plain line at each tenth (and at the end)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.counts: dict[str, int] = {}
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="url", desc="warming", file=sys.stderr)
        self.step = max(1, total // 10)

    def update(self, result: Result) -> None:
        self.done += 1
        self.counts[result.verdict] = self.counts.get(result.verdict, 0) + 1
        summary = ", ".join(f"{n} {v}" for v, n in sorted(self.counts.items()))
        if self.bar is not None:
            self.bar.set_postfix_str(summary, refresh=False)
            self.bar.update(1)
        elif self.done % self.step == 0 or self.done == self.total:
            print(f"caching-proxy: warmed {self.done}/{self.total} ({summary})",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def warm_all(client: Client, targets: list[str], concurrency: int) -> list[Result]:
    progress = Progress(len(targets))
    results: dict[str, Result] = {}
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in as_completed([pool.submit(client.warm, t) for t in targets]):
                result = future.result()
                results[result.target] = result
                progress.update(result)
    finally:
        progress.close()
    return [results[t] for t in targets]  # in the list's order


def summary(client: Client, results: list[Result], seconds: float) -> str:
    by = {v: [r for r in results if r.verdict == v]
          for v in ("stored", "cached", "not stored", "error")}
    lines = [f"caching-proxy: warmed {len(results)} URL{'s' * (len(results) != 1)} through "
             f"{client.base} in {seconds:.1f} s: {len(by['stored'])} stored, "
             f"{len(by['cached'])} already cached, {len(by['not stored'])} not stored, "
             f"{len(by['error'])} errors"]
    for verdict, title in (("not stored", "not stored"), ("error", "errors")):
        if by[verdict]:
            lines.append(f"{title}:")
            width = min(60, max(len(r.target) for r in by[verdict]))
            for r in by[verdict][:LISTED]:
                status = r.status if r.status is not None else "-"
                lines.append(f"  {r.target:<{width}}  {status}  {r.reason}"
                             + (f"  [{r.cache_status}]" if r.cache_status else ""))
            if len(by[verdict]) > LISTED:
                lines.append(f"  ... and {len(by[verdict]) - LISTED} more (--json lists all)")
    return "\n".join(lines)


# Options a private warming proxy does not take from the command: it listens on loopback only,
# without TLS, logs, metrics or an admin API of its own.
_NOT_FOR_PRIVATE = frozenset({"cache_access_log", "cache_admin_port", "cache_admin_host",
                              "cache_metrics_port", "cache_tls_cert", "cache_tls_key"})


def private_proxy_argv(args: argparse.Namespace, port: int, cache_dir: str) -> list[str]:
    """The command line of a proxy with this command's store and cache options."""
    from caching_proxy.cli.options import options_given

    argv = ["--origin", args.origin, "--host", "127.0.0.1", "--port", str(port), "--quiet",
            "--cache-dir", cache_dir]
    for name, value in options_given(args).items():
        if name not in _NOT_FOR_PRIVATE:
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["--set", f"{name}={shown}"]
    for setting in args.setoptions or ():
        argv += ["--set", setting]
    return argv


class PrivateProxy:
    """A proxy process started for the warming only (see the module's docstring)."""

    READY = "caching-proxy: listening on"

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "caching_proxy", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once it listens; WarmError with its output if it exits or takes too long."""
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            lines.append(line.rstrip())
            if self.READY in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise WarmError("the warming proxy did not start: " + " / ".join(lines[-3:]), 1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def run(args: argparse.Namespace, cache_dir: str | None = None) -> int:
    """0: every URL answered (stored or not); 1: errors, or no proxy answers; 2: a bad list.
    `cache_dir`: the resolved store folder, for a private proxy (with --origin)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(args.host, args.host)
    client = Client(host, args.port, tls=bool(args.tls_cert))
    private: PrivateProxy | None = None
    try:
        client.check()
    except OSError as e:
        if not args.origin or cache_dir is None:
            print(f"caching-proxy: error: no proxy answers at {client.base} ({e.strerror or e});"
                  " give --origin to warm the store through a proxy of its own, or start one",
                  file=sys.stderr)
            return 1
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        print(f"caching-proxy: no proxy at {client.base}: warming through a private one on "
              f"127.0.0.1:{port} (origin {args.origin}, the same store and options)",
              file=sys.stderr)
        private = PrivateProxy(private_proxy_argv(args, port, cache_dir))
        try:
            private.wait_ready()
        except WarmError as failed:
            print(f"caching-proxy: error: {failed}", file=sys.stderr)
            return failed.code
        client = Client("127.0.0.1", port, tls=False)
    try:
        return _warm(args, client)
    finally:
        if private is not None:
            private.stop()


def _warm(args: argparse.Namespace, client: Client) -> int:
    started = time.monotonic()
    try:
        targets = load_targets(args.warm, client.get)
    except WarmError as e:
        print(f"caching-proxy: error: {e}", file=sys.stderr)
        return e.code
    results = warm_all(client, targets, args.warm_concurrency)
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps({"proxy": client.base, "seconds": round(seconds, 3),
                          "urls": len(results),
                          **{v.replace(" ", "_"): sum(r.verdict == v for r in results)
                             for v in ("stored", "cached", "not stored")},
                          "errors": sum(r.verdict == "error" for r in results),
                          "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(summary(client, results, seconds))
    return 1 if any(r.verdict == "error" for r in results) else 0
