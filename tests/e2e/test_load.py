"""A short mixed load (the CI version of scripts/soak): 50 keep-alive connections for 8 s of
hits, misses, revalidations and invalidations by POST. Every body is verified against its own
checksum; no errors, no wrong bodies, and the proxy's memory stays flat."""

from __future__ import annotations

from pathlib import Path

from support.load import LoadOrigin, run_load
from support.proxy import Proxy


def test_mixed_load_serves_only_right_bytes(tmp_path: Path) -> None:
    origin = LoadOrigin()
    try:
        with Proxy(origin.origin.url, tmp_path / "cache") as proxy:
            figures = run_load(proxy, origin, connections=50, seconds=8)
    finally:
        origin.origin.stop()
    print(figures.as_json())
    assert figures.errors == 0 and figures.wrong_bodies == 0, figures.samples
    assert figures.requests >= 1000
    assert all(figures.kinds[k] > 0 for k in ("hit", "miss", "revalidation", "invalidation"))
    assert figures.x_cache["HIT"] > 0 and figures.origin_304 > 0
    # Flat: less than 32 MiB of growth over the run (a leak of a few KiB per request would
    # show several times that).
    assert figures.rss_kib_after - figures.rss_kib_before < 32 * 1024, figures
