"""What `--list`, `--stats` and `cache.stats` show: rows and figures from a store, and the plain
table a terminal gets (scripts get JSON). `--stats` and `/stats` show the persisted counters
(every process's, since the store was created); `/stats` adds the running proxy's own uptime
and open connections (ops/metrics.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from caching_proxy.ops.counters import COUNTER_NAMES, STORE_DOWN_MS, hit_ratio
from caching_proxy.policy.vary import ABSENT
from caching_proxy.store import Store


def stats_of(store: Store) -> dict[str, Any]:
    usage = store.usage_estimate()
    counts = store.counters()
    figures: dict[str, Any] = {"entries": usage.entries, "bytes": usage.bytes}
    figures.update({name: counts.get(name, 0) for name in COUNTER_NAMES
                    if name != STORE_DOWN_MS})
    figures["store_down_seconds"] = round(counts.get(STORE_DOWN_MS, 0) / 1000, 1)
    ratio = hit_ratio(counts)
    figures["hit_ratio"] = round(ratio, 4) if ratio is not None else None
    return figures


def vary_of(names: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str | None]:
    """A variant's request field values by the names its `Vary` lists; None for a field the
    request did not send (the store's internal marker for it never leaves it)."""
    return {name: None if value == ABSENT else value
            for name, value in zip(names, values, strict=False)}


def vary_text(vary: dict[str, str | None]) -> str:
    """The table's VARY cell: `name=value` pairs, `name` alone for an absent field; - for none."""
    return " ".join(name if value is None else f"{name}={value}"
                    for name, value in vary.items()) or "-"


def entry_rows(store: Store, now: float, limit: int | None = None) -> list[dict[str, Any]]:
    """One row per stored response (each Vary variant its own, with its field values), by URL;
    `variants` is how many are stored for its URL. `limit`: the first that many rows."""
    entries = sorted(store.entries(), key=lambda e: (e.url, e.vary_values))
    variants = Counter(e.url for e in entries)
    rows = []
    for e in entries[:limit]:
        rows.append({
            "url": e.url,
            "status": e.status,
            "size": e.size,
            "age": int(e.meta.age(now)),
            "ttl": int(e.meta.ttl(now)),  # negative: stale
            "variants": variants[e.url],
            "vary": vary_of(e.meta.vary, e.vary_values),
        })
    return rows


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)
