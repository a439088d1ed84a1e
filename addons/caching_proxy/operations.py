"""The one-shot commands on a store: `--clear-cache`, `--purge`, `--purge-prefix`, `--list`,
`--stats`. Each opens the store beside any running proxy (diskcache is safe for that), prints
what it did (a table, or JSON with `--json`) and exits."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from caching_proxy.purge import prefix_glob, remove
from caching_proxy.report import entry_rows, stats_of, table
from caching_proxy.store import Store, open_store

LIST_COLUMNS = ["url", "status", "size", "age", "ttl", "variants"]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def run(args: argparse.Namespace, path: str) -> int:
    """`path`: the diskcache folder or the Redis URL."""
    store = open_store(path)
    try:
        result = carry_out(store, args, path)
    except ValueError as e:
        print(f"caching-proxy: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the store's medium failed (disk, Redis down)
        print(f"caching-proxy: error: cache store {path}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def carry_out(store: Store, args: argparse.Namespace, path: str) -> dict[str, Any]:
    result: dict[str, Any] = {"store": path}
    say = (lambda text: None) if args.json else print
    targets = [*args.purge, *(prefix_glob(p) for p in args.purge_prefix)]
    for target in targets:
        if not target.startswith("/") and "://" not in target:
            raise ValueError(f"cannot purge {target!r}: give a URL or a /path")
    if targets:
        purged = {t: remove(store, t, origin=args.origin) for t in targets}
        result["purged"] = purged
        for target, count in purged.items():
            say(f"caching-proxy: purged {count} responses for {target}")
    if args.clear_cache:
        removed = store.clear()
        result["cleared"] = {"entries": removed.entries, "bytes": removed.bytes}
        say(f"caching-proxy: cleared {removed.entries} entries ({human_size(removed.bytes)}) "
            f"from {path}")
    if args.list:
        rows = entry_rows(store, time.time())
        result["entries"] = rows
        say(table([{**r, "size": human_size(r["size"])} for r in rows], LIST_COLUMNS)
            if rows else f"caching-proxy: no stored responses in {path}")
    if args.stats:
        figures = stats_of(store)
        result["stats"] = figures
        shown = {**figures, "bytes": human_size(figures["bytes"]),
                 "hit_ratio": "-" if figures["hit_ratio"] is None
                 else f"{figures['hit_ratio']:.1%}"}
        say("\n".join(f"{name.replace('_', ' '):<14} {value}" for name, value in shown.items()))
    return result
