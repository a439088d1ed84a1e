"""`caching-proxy --top`: a running proxy's figures, live, from its admin API's `/status`.

Polled once a second (REFRESH): requests/s by outcome and origin answers/s between two polls,
hit ratios over 1, 5 and 60 minutes and p50/p99 latencies (the last minute's, estimated from
histogram buckets) as the proxy's history gives them (history.py), open connections, the
store's entries, bytes and evictions, the memory tier's use, uptime. On a terminal a rich table
redrawn in place; otherwise one plain block a second (`--once`: one, then exit), for scripts.
No proxy answering: one line, exit 1. Ctrl-C: exit 0, quietly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

REFRESH = 1.0
TIMEOUT = 5.0
RATES = (("hit/s", ("hits", "collapsed")), ("miss/s", ("misses",)),
         ("revalidated/s", ("revalidated",)), ("stale/s", ("stale",)), ("pass/s", ("passed",)),
         ("error/s", ("origin_errors",)), ("origin answers/s", ("origin_answers",)))


class TopError(Exception):
    """No figures: the proxy did not answer, or refused."""


def admin_url(host: str | None, port: int) -> str:
    """The admin API's base URL; a wildcard address is reached on loopback."""
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fetch_status(base: str, token: str) -> dict[str, Any]:
    """GET /status; TopError saying why when there is no answer to show."""
    request = urllib.request.Request(base + "/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            why = e.reason
        raise TopError(f"the admin API at {base} answered {e.code}: {why}") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TopError(f"no admin API answers at {base}: {reason}") from None


def _per_second(now: dict[str, Any], before: dict[str, Any] | None, names: tuple[str, ...]
                ) -> str:
    if before is None or "counts" not in now or "counts" not in before:
        return "-"
    span = now["at"] - before["at"]
    if span <= 0:
        return "-"
    moved = sum(now["counts"].get(n, 0) - before["counts"].get(n, 0) for n in names)
    return f"{max(0.0, moved) / span:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _size(n: int) -> str:
    from caching_proxy.cli.operations import human_size

    return human_size(int(n))


def figures(now: dict[str, Any], before: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The rows shown, as (name, value): rates between `before` and `now` (two /status
    answers; none yet: -)."""
    windows = now.get("windows") or {}
    latency = now.get("latency") or {}
    rows = [("uptime", f"{now.get('uptime_seconds', 0):.0f} s")]
    rows += [(name, _per_second(now, before, names)) for name, names in RATES]
    for name, label in (("1m", "1 min"), ("5m", "5 min"), ("60m", "60 min")):
        window = windows.get(name)
        rows.append((f"hit ratio {label}", _pct(window["hit_ratio"] if window else None)))
    for name in ("hit", "origin"):
        found = latency.get(name) or {}
        rows.append((f"{name} latency p50 / p99",
                     f"{_ms(found.get('p50'))} / {_ms(found.get('p99'))}"))
    rows.append(("connections open", str(now.get("connections_open", "-"))))
    rows.append(("store entries", str(now.get("entries", "-"))))
    rows.append(("store bytes", _size(now.get("bytes", 0))))
    rows.append(("evictions", str(now.get("evicted_expiry", 0) + now.get("evicted_lru", 0))))
    tier = now.get("memory_tier")
    rows.append(("memory tier", "off" if not tier
                 else f"{_size(tier['bytes'])} of {_size(tier['max_bytes'])}"))
    return rows


def plain(rows: list[tuple[str, str]]) -> str:
    """One block of `name: value` lines, for a pipe or a file."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _table(rows: list[tuple[str, str]], base: str) -> Any:
    from rich.table import Table

    table = Table(title=f"caching-proxy --top  {base}  (p50/p99: estimated from buckets, last "
                        "minute)", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def watch(base: str, token: str, *, once: bool, terminal: bool, out: TextIO,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Poll and show until Ctrl-C (or one block with `once`); the exit code."""
    try:
        before = fetch_status(base, token)
        sleep(REFRESH)
        now = fetch_status(base, token)
        if once or not terminal:
            while True:
                print(plain(figures(now, before)) + "\n", file=out, flush=True)
                if once:
                    return 0
                sleep(REFRESH)
                before, now = now, fetch_status(base, token)
        from rich.console import Console
        from rich.live import Live

        with Live(_table(figures(now, before), base), console=Console(file=out),
                  auto_refresh=False, screen=True) as live:
            while True:
                sleep(REFRESH)
                before, now = now, fetch_status(base, token)
                live.update(_table(figures(now, before), base), refresh=True)
    except KeyboardInterrupt:
        return 0
    except TopError as e:
        print(f"caching-proxy: error: {e}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    """`--top` with the parsed command line; 2 without an admin port."""
    if not args.admin_port:
        print("caching-proxy: error: --top needs --admin-port PORT (the running proxy's admin "
              "API; --admin-host and --purge-secret as it was started with)", file=sys.stderr)
        return 2
    base = admin_url(args.admin_host, args.admin_port)
    return watch(base, args.purge_secret or "", once=args.once, terminal=sys.stdout.isatty(),
                 out=sys.stdout)
