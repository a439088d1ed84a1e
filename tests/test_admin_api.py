"""The admin API end to end: a real proxy with --admin-port, a real origin, real sockets.

Stats, paged entries, purges (url, prefix, glob, tags, soft), clear, metrics; JSON errors for
bad JSON, unknown fields, empty and oversized bodies, wrong methods and paths; the bearer
token; and purges running concurrently with load (no wrong bodies)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from support.client import Response, fetch
from support.origin import Origin, free_port
from support.proxy import Proxy, cli

FRESH = ("Cache-Control", "max-age=600")


def admin_proxy(make_proxy: Any, *extra: str) -> tuple[Proxy, str]:
    port = free_port()
    return make_proxy("--admin-port", str(port), *extra), f"http://127.0.0.1:{port}"


def call(url: str, method: str = "GET", body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[Response, Any]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    answer = fetch(url, method=method, body=data, headers={
        "Content-Type": "application/json", **(headers or {})})
    assert answer.header("Content-Type") is not None
    parsed = json.loads(answer.body) if answer.header("Content-Type") == "application/json" \
        else answer.body
    return answer, parsed


def fill(origin: Origin, proxy: Proxy, paths: list[str], tag_of: Any = None) -> None:
    for path in paths:
        extra = [("Surrogate-Key", tag_of(path))] if tag_of else []
        origin.route(path, 200, [FRESH, *extra], path.encode())
        assert fetch(proxy.url + path).x_cache == "MISS"


def test_stats_entries_paging_and_metrics(origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    paths = [f"/e/{i:02d}" for i in range(25)] + ["/other"]
    fill(origin, proxy, paths, tag_of=lambda p: "even" if p[-1] in "02468" else "odd")
    fetch(proxy.url + "/e/00")  # a hit
    time.sleep(1.2)  # counters reach the store about once a second
    answer, stats = call(admin + "/stats")
    assert answer.status == 200 and stats["entries"] == 26 and stats["hits"] >= 1
    assert answer.header("Cache-Control") == "no-store"

    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        _, page = call(admin + f"/entries?prefix=/e/&limit=10&cursor={cursor}")
        seen += [row["url"] for row in page["entries"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert pages == 3 and seen == [origin.url + p for p in paths[:25]]
    _, tagged = call(admin + "/entries?tag=even&limit=100")
    assert sorted(r["url"] for r in tagged["entries"]) == sorted(
        origin.url + p for p in paths[:25] if p[-1] in "02468")
    assert all(r["tags"] == ["even"] and r["status"] == 200 for r in tagged["entries"])

    metrics = fetch(admin + "/metrics")
    assert metrics.status == 200 and b"caching_proxy_store_entries 26.0" in metrics.body


def test_purge_by_url_prefix_glob_tags_and_clear(origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    paths = ["/a/1", "/a/2", "/b/1", "/b/2", "/c", "/d"]
    fill(origin, proxy, paths, tag_of=lambda p: "t-" + p.split("/")[1])
    _, done = call(admin + "/purge", "POST", {"url": proxy.url + "/c"})
    assert done == {"soft": False, "purged": 1, "matched": origin.url + "/c"}
    _, done = call(admin + "/purge", "POST", {"prefix": "/a/"})
    assert done["purged"] == 2
    _, done = call(admin + "/purge", "POST", {"glob": "/b/*", "soft": True})
    assert done["purged"] == 2 and done["soft"] is True
    _, done = call(admin + "/purge", "POST", {"tags": ["t-d"]})
    assert done == {"soft": False, "purged": 1, "tags": ["t-d"]}
    xs = {p: fetch(proxy.url + p).x_cache for p in paths}
    assert xs == {"/a/1": "MISS", "/a/2": "MISS", "/b/1": "MISS", "/b/2": "MISS", "/c": "MISS",
                  "/d": "MISS"}
    assert all(origin.count(p) == 2 for p in paths)
    _, cleared = call(admin + "/clear", "POST")
    assert cleared["cleared"] == 6 and cleared["soft"] is False
    assert fetch(proxy.url + "/d").x_cache == "MISS"
    _, soft = call(admin + "/clear", "POST", {"soft": True})
    assert soft == {"cleared": 1, "soft": True}


def test_errors_are_json_with_a_fitting_status(origin: Origin, make_proxy: Any) -> None:
    _, admin = admin_proxy(make_proxy)
    cases: list[tuple[str, str, Any, bytes | None, int, str]] = [
        ("/purge", "POST", None, b"{not json", 400, "not JSON"),
        ("/purge", "POST", None, b"[1, 2]", 400, "JSON object"),
        ("/purge", "POST", {"url": "/x", "colour": "red"}, None, 400, "unknown field 'colour'"),
        ("/purge", "POST", None, b"", 400, "exactly one of"),
        ("/purge", "POST", {"url": "/x", "tags": ["a"]}, None, 400, "exactly one of"),
        ("/purge", "POST", {"tags": []}, None, 400, "non-empty list"),
        ("/purge", "POST", {"tags": ["a b"]}, None, 400, "invalid tag"),
        ("/purge", "POST", {"url": "/x", "soft": "yes"}, None, 400, "soft must be"),
        ("/purge", "POST", {"prefix": "nope"}, None, 400, "prefix must be a /path"),
        ("/purge", "POST", None, b"x" * (64 * 1024 + 1), 413, "over 64 KiB"),
        ("/purge", "GET", None, None, 405, "takes POST"),
        ("/stats", "POST", None, None, 405, "takes GET"),
        ("/nowhere", "GET", None, None, 404, "no such endpoint"),
        ("/entries?limit=0", "GET", None, None, 400, "limit must be"),
        ("/entries?limit=x", "GET", None, None, 400, "whole number"),
        ("/entries?colour=1", "GET", None, None, 400, "unknown parameter"),
    ]
    for path, method, body, raw, status, text in cases:
        answer, parsed = call(admin + path, method, body, raw)
        assert answer.status == status, (path, method, body, raw, answer.status, parsed)
        assert text in parsed["error"], (path, parsed)
    assert call(admin + "/purge", "GET")[0].header("Allow") == "POST"
    # After all that, the API still answers.
    assert call(admin + "/stats")[0].status == 200


def test_a_bearer_token_with_a_secret_and_only_loopback_without(
        origin: Origin, make_proxy: Any, tmp_path: Any) -> None:
    _, admin = admin_proxy(make_proxy, "--purge-secret", "s3cret", "--admin-host", "0.0.0.0")
    missing, _ = call(admin + "/stats")
    assert missing.status == 401 and missing.header("WWW-Authenticate") is not None
    wrong, _ = call(admin + "/stats", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 403
    right, _ = call(admin + "/stats", headers={"Authorization": "Bearer s3cret"})
    assert right.status == 200

    refused = cli("--origin", origin.url, "--cache-dir", str(tmp_path / "x"),
                  "--admin-port", str(free_port()), "--admin-host", "0.0.0.0", timeout=30)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "needs --purge-secret" in refused.stderr and refused.stderr.count("\n") == 1


def test_concurrent_purges_under_load_never_serve_a_wrong_body(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    paths = [f"/load/{i}" for i in range(40)]
    fill(origin, proxy, paths, tag_of=lambda p: f"g{int(p.rsplit('/', 1)[1]) % 4}")
    stop = time.monotonic() + 4
    wrong: list[tuple[str, bytes]] = []
    answers = [0]
    errors: list[str] = []

    def client(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            path = paths[i % len(paths)]
            try:
                got = fetch(proxy.url + path)
            except OSError as e:
                errors.append(repr(e))
                continue
            answers[0] += 1
            if got.status != 200 or got.body != path.encode():
                wrong.append((path, got.body))
            i += 7

    def purger(kind: int) -> None:
        n = 0
        while time.monotonic() < stop:
            body = [{"tags": [f"g{n % 4}"]}, {"prefix": "/load/1"},
                    {"glob": "/load/*", "soft": True}, {"url": origin.url + "/load/3"}][kind]
            answer, _ = call(admin + "/purge", "POST", body)
            assert answer.status == 200
            n += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=purger, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and errors == [] and answers[0] > 100


def test_admin_port_in_use_is_one_line_and_exit_2(origin: Origin, tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("--origin", origin.url, "--cache-dir", str(tmp_path / "c"),
                   "--admin-port", str(port), timeout=30)
    assert done.returncode == 2 and "cannot serve the admin API" in done.stderr
