"""The one-shot commands on a store: `--clear-cache`, `--purge`, `--purge-prefix`,
`--purge-tag` (each `--soft` too), `--list`, `--stats`. Each opens the store beside any
running proxy (diskcache is safe for that), prints what it did (a table, or JSON with `--json`)
and exits."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from caching_proxy.edge.purge import counted, prefix_glob, remove, remove_tags
from caching_proxy.ops.report import entry_rows, stats_of, table, vary_text
from caching_proxy.policy.keys import url_key
from caching_proxy.store import Store, open_store
from caching_proxy.store.redis.urls import redact_store_url

LIST_COLUMNS = ["url", "status", "size", "age", "ttl", "variants", "vary"]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def run(args: argparse.Namespace, path: str) -> int:
    """`path`: the diskcache folder or the Redis URL. A reader that stops reading (`| head`)
    ends the output quietly: no traceback, no error line, exit code 0."""
    try:
        return _run(args, path)
    except BrokenPipeError:
        # What is still buffered for the closed pipe would fail again as Python exits.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace, path: str) -> int:
    store = open_store(path)
    shown = redact_store_url(path)  # a Redis URL's passwords as ***, in every line printed
    try:
        result = carry_out(store, args, shown)
    except BrokenPipeError:
        raise  # an OSError, but the terminal's, not the store's
    except ValueError as e:
        print(f"caching-proxy: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the store's medium failed (disk, Redis down)
        print(f"caching-proxy: error: cache store {shown}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=2))
    sys.stdout.flush()  # a closed pipe is found here, inside run, not at exit
    return 0


def url_or_none(target: str) -> str | None:
    """The store key a URL target names (None for a /path)."""
    return url_key(target) if "://" in target else None


def carry_out(store: Store, args: argparse.Namespace, path: str) -> dict[str, Any]:
    """`path`: the store as shown (its passwords hidden)."""
    result: dict[str, Any] = {"store": path}
    say = (lambda text: None) if args.json else print
    targets = [*args.purge, *(prefix_glob(p) for p in args.purge_prefix)]
    for target in targets:
        if not target.startswith("/") and "://" not in target:
            raise ValueError(f"cannot purge {target!r}: give a URL or a /path")
    soft = bool(args.soft)
    done = "marked stale" if soft else "purged"
    if soft and not (targets or args.purge_tag or args.clear_cache):
        raise ValueError("--soft goes with --purge, --purge-prefix, --purge-tag or --clear-cache")
    if soft:
        result["soft"] = True
    if targets:
        removals = {t: remove(store, t, origin=args.origin, soft=soft) for t in targets}
        result["purged"] = {t: r.count for t, r in removals.items()}
        result["matched"] = {t: r.matched for t, r in removals.items()}
        for target, r in removals.items():
            also = "" if r.matched in (target, url_or_none(target)) else f" (matched {r.matched})"
            say(f"caching-proxy: {done} {counted(r.count)} for {target}{also}")
    if args.purge_tag:
        tags = list(dict.fromkeys(args.purge_tag))
        count = remove_tags(store, tags, soft)
        result["purged_tags"] = {"tags": tags, "purged": count}
        say(f"caching-proxy: {done} {counted(count)} tagged {' '.join(tags)}")
    if args.clear_cache:
        if soft:
            count = store.soft_clear()
            result["cleared"] = {"entries": count, "soft": True}
            say(f"caching-proxy: marked {counted(count, 'response')} "
                f"stale in {path}")
        else:
            removed = store.clear()
            result["cleared"] = {"entries": removed.entries, "bytes": removed.bytes}
            say(f"caching-proxy: cleared {removed.entries} entries "
                f"({human_size(removed.bytes)}) from {path}")
    limit = getattr(args, "limit", None)
    if limit is not None and not args.list:
        raise ValueError("--limit goes with --list")
    if args.list:
        rows = entry_rows(store, time.time(), limit)
        result["entries"] = rows
        say(table([{**r, "size": human_size(r["size"]), "vary": vary_text(r["vary"])}
                   for r in rows], LIST_COLUMNS)
            if rows else f"caching-proxy: no stored responses in {path}")
    if args.stats:
        figures = stats_of(store)
        result["stats"] = figures
        shown = {**figures, "bytes": human_size(figures["bytes"]),
                 "bytes_served": human_size(figures["bytes_served"]),
                 "hit_ratio": "-" if figures["hit_ratio"] is None
                 else f"{figures['hit_ratio']:.1%}"}
        shown = {("store_down" if name == "store_down_seconds" else name):
                 (f"{value} s" if name == "store_down_seconds" else value)
                 for name, value in shown.items()}
        say("\n".join(f"{name.replace('_', ' '):<14} {value}" for name, value in shown.items()))
    return result
