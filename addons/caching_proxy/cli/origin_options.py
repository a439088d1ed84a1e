"""The rows of the options table (cli/options.py) for the origin gate (origin/gate.py): the
origin budget, health checks, offline mode; and refresh ahead (cache/lookup.py)."""

from __future__ import annotations

from caching_proxy.cli.option_types import Flag, Option
from caching_proxy.cli.option_values import (
    beta,
    burst,
    count,
    origin_rate,
    size_or_zero,
    wait_seconds,
)

ORIGIN_OPTIONS: tuple[Option, ...] = (
    Option("cache_origin_concurrency", int, 0,
           "At most this many requests in flight to the origin (nginx max_conns), shared by "
           "every process and instance on the store; more wait in arrival order up to "
           "cache_origin_queue_timeout. 0: no bound.", (
               Flag("--origin-concurrency", "at most N requests in flight to the origin, for "
                    "every worker and instance together; more wait in a queue, in arrival "
                    "order (default: {default} = no bound)", metavar="N", parse=count),)),
    Option("cache_origin_rate", str, "",
           "At most this many requests a second (N, N/s) or a minute (N/m) to the origin, "
           "spaced evenly (a GCRA schedule, as nginx limit_req), shared by every process and "
           "instance on the store; more wait up to cache_origin_queue_timeout. Empty: no "
           "bound.", (
               Flag("--origin-rate", "at most RATE requests to the origin, e.g. 5/s or 120/m, "
                    "one schedule for every worker and every instance on one Redis; others "
                    "wait in a queue (default: no bound)", metavar="RATE", parse=origin_rate),)),
    Option("cache_origin_burst", int, 1,
           "Requests that may go to the origin back to back beyond cache_origin_rate (nginx "
           "limit_req burst with nodelay); 1: none, every request spaced.", (
               Flag("--origin-burst", "requests allowed back to back above --origin-rate "
                    "(default: {default} = no burst)", metavar="N", parse=burst),)),
    Option("cache_origin_queue_timeout", str, "10",
           "Seconds a request waits for the origin budget before it is answered with a stored "
           "stale response, else 503 with Retry-After.", (
               Flag("--origin-queue-timeout", "how long a request waits for the origin budget "
                    "before it gets a stored stale response, else 503 with Retry-After "
                    "(default: {default})", metavar="SECONDS", parse=wait_seconds),)),
    Option("cache_offline", bool, False,
           "Never contact the origin: answer every stored response however stale "
           "(detail=offline), and 504 to anything else. Switchable at run time (admin API "
           "POST /offline).", (
               Flag("--offline", "never contact the origin: serve what is stored, however "
                    "stale, and 504 for the rest (for development against a recorded API, demos "
                    "without network, outages)", switch=True, sets=True),)),
    Option("cache_health_check", str, "",
           "Path on the origin to GET every cache_health_interval seconds; after "
           "cache_health_fails failures in a row (no answer, or 5xx) the origin is down: "
           "misses get a stored stale response or 503 at once, until a check succeeds. Empty: "
           "no checks.", (
               Flag("--health-check", "check the origin by GETting PATH every "
                    "--health-interval; while it is down misses get stale or 503 at once "
                    "instead of waiting for timeouts (default: no checks)", metavar="PATH"),)),
    Option("cache_health_interval", str, "5", "Seconds between health checks.", (
        Flag("--health-interval", "seconds between health checks (default: {default})",
             metavar="SECONDS", parse=wait_seconds),)),
    Option("cache_health_fails", int, 3,
           "Failed health checks in a row that mark the origin down.", (
               Flag("--health-fails", "failed checks in a row that mark the origin down "
                    "(default: {default}); one success marks it up", metavar="N",
                    parse=burst),)),
    Option("cache_refresh_ahead", str, "1",
           "Refresh a hot entry in the background shortly before it expires, so that a steady "
           "stream of requests never meets a miss (XFetch: refresh when -delta*beta*ln(rand) "
           ">= seconds of freshness left, delta the last fetch's duration). The beta factor: "
           "larger refreshes earlier; 0: off.", (
               Flag("--refresh-ahead", "refresh hot entries in the background just before "
                    "they expire, with this eagerness BETA (default: {default}; 0 = off)",
                    metavar="BETA", parse=beta),)),
    Option("cache_slice", str, "0",
           "Fetch and store a large object in ranges of this size (nginx's slice module): a "
           "Range request the store cannot answer whole costs the origin only the slices it "
           "touches, each fetched once (e.g. 1m). 0: off.", (
               Flag("--slice", "fetch and store large objects in SIZE ranges, so Range "
                    "requests cost the origin only the slices they touch, e.g. 1m (default: "
                    "off)", metavar="SIZE", parse=size_or_zero),)),
)
