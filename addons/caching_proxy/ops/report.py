"""What `--list`, `--stats` and `cache.stats` show: rows and figures from a store, and the plain
table a terminal gets (scripts get JSON)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from caching_proxy.ops.counters import COUNTER_NAMES, hit_ratio
from caching_proxy.store import Store


def stats_of(store: Store) -> dict[str, Any]:
    usage = store.usage_estimate()
    counts = store.counters()
    figures: dict[str, Any] = {"entries": usage.entries, "bytes": usage.bytes}
    figures.update({name: counts.get(name, 0) for name in COUNTER_NAMES})
    ratio = hit_ratio(counts)
    figures["hit_ratio"] = round(ratio, 4) if ratio is not None else None
    return figures


def entry_rows(store: Store, now: float) -> list[dict[str, Any]]:
    """One row per stored response, by URL; `variants` is how many are stored for its URL."""
    entries = sorted(store.entries(), key=lambda e: (e.url, e.vary_values))
    variants = Counter(e.url for e in entries)
    rows = []
    for e in entries:
        rows.append({
            "url": e.url,
            "status": e.status,
            "size": e.size,
            "age": int(e.meta.age(now)),
            "ttl": int(e.meta.ttl(now)),  # negative: stale
            "variants": variants[e.url],
            "vary": dict(zip(e.meta.vary, e.vary_values, strict=False)),
        })
    return rows


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)
