"""The admin API end to end: a real proxy with --admin-port, a real origin, real sockets.

Stats, paged entries, purges (url, prefix, glob, tags, soft), clear, metrics; JSON errors for
bad JSON, unknown fields, empty and oversized bodies, wrong methods and paths; the bearer
token; and purges running concurrently with load (no wrong bodies).

Against hostile clients: cross-site POSTs (not JSON: 415; a foreign Origin: 403), DNS rebinding
(a foreign Host: 421), a bearer token of any bytes, half-sent heads held open, and the head and
body of every answer in one write. The deadlines are tested in process, on a real AdminServer
with short timeouts, since a proxy process keeps its 10 s."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caching_proxy.ops.admin import AdminServer, Handler
from caching_proxy.ops.admin_http import MAX_CONNECTIONS
from caching_proxy.store import DiskStore
from support.client import Response, fetch, raw_request
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


def admin_port(admin: str) -> int:
    return int(admin.rsplit(":", 1)[1])


def entry_count(admin: str, headers: dict[str, str] | None = None) -> int:
    answer, page = call(admin + "/entries", headers=headers)
    assert answer.status == 200, page
    return len(page["entries"])


def test_a_cross_site_post_is_refused_and_the_store_keeps_its_entries(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    fill(origin, proxy, ["/x/1", "/x/2", "/x/3"])
    # What a web page may send without a CORS preflight (a "simple request"), and no type at all.
    for headers in ({"Content-Type": "text/plain", "Origin": "http://evil.example"},
                    {"Content-Type": "text/plain;charset=UTF-8"},
                    {"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "multipart/form-data; boundary=x"}, {}):
        for body in (b'{"soft": true}', b""):
            answer = fetch(admin + "/clear", "POST", headers, body)
            assert answer.status == 415, (headers, body, answer.body)
            assert "Content-Type: application/json" in json.loads(answer.body)["error"]
    refused = fetch(admin + "/purge", "POST", {"Content-Type": "text/plain"}, b'{"prefix": "/x/"}')
    assert refused.status == 415
    # The refused request's body is not then read as a request of its own.
    inner = (b"POST /clear HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: 0\r\n\r\n")
    got = raw_request("127.0.0.1", admin_port(admin), b"POST /clear HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner)
    assert got.startswith(b"HTTP/1.1 415 ") and got.count(b"HTTP/1.1 ") == 1, got
    assert entry_count(admin) == 3
    assert fetch(proxy.url + "/x/1").x_cache == "HIT" and origin.count("/x/1") == 1
    # Any parameters, and any case, of the JSON media type.
    answer, done = call(admin + "/purge", "POST", {"url": "/x/1"},
                        headers={"Content-Type": "Application/JSON ; charset=utf-8"})
    assert answer.status == 200 and done["purged"] == 1


def test_a_foreign_origin_is_refused_even_with_a_json_body(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    port = admin_port(admin)
    fill(origin, proxy, ["/o/1", "/o/2"])
    foreign = ["http://evil.example", f"http://evil.example:{port}", "null", "",
               f"https://127.0.0.1:{port}", "http://127.0.0.1:1", "http://127.0.0.1",
               f"http://127.0.0.1:{port}.evil.example", f"http://user@127.0.0.1:{port}",
               f"http://0.0.0.0:{port}"]
    for value in foreign:
        for path, method in (("/clear", "POST"), ("/purge", "POST"), ("/entries", "GET"),
                             ("/stats", "GET")):
            body = {"prefix": "/o/"} if path == "/purge" else None
            answer, parsed = call(admin + path, method, body, headers={"Origin": value})
            assert answer.status == 403 and "cross-origin" in parsed["error"], (value, parsed)
    own = f"http://127.0.0.1:{port}"
    assert fetch(admin + "/stats", headers=[("Origin", own), ("Origin", own)]).status == 403
    assert entry_count(admin) == 2
    for value in (own, f"http://localhost:{port}", f"http://[::1]:{port}"):
        assert call(admin + "/stats", headers={"Origin": value})[0].status == 200, value
    answer, done = call(admin + "/purge", "POST", {"prefix": "/o/"}, headers={"Origin": own})
    assert answer.status == 200 and done["purged"] == 2


def test_a_foreign_host_is_refused_and_loopback_names_are_not(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    port = admin_port(admin)
    fill(origin, proxy, ["/h/1"])
    # DNS rebinding: the attacker's name, resolving here, is what the browser sends.
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example",
                 f"127.0.0.1.evil.example:{port}", "127.0.0.1:1", f"0.0.0.0:{port}",
                 f"10.1.2.3:{port}"):
        for path in ("/entries", "/stats"):
            answer, parsed = call(admin + path, headers={"Host": host})
            assert answer.status == 421, (host, path, parsed)
            assert list(parsed) == ["error"] and "does not answer for Host" in parsed["error"]
        assert call(admin + "/clear", "POST", headers={"Host": host})[0].status == 421
    for host in (f"127.0.0.1:{port}/x", "evil.example@127.0.0.1", "[::1", "127.0.0.1:abc"):
        assert call(admin + "/stats", headers={"Host": host})[0].status == 400, host
    assert fetch(admin + "/stats", headers=[("Host", "127.0.0.1"), ("Host", "127.0.0.1")]).status \
        == 400
    assert entry_count(admin) == 1
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", "127.0.0.1",
                 "localhost", f"127.8.9.10:{port}", f"[::1]:{port}"):
        assert entry_count(admin, {"Host": host}) == 1, host
    # No Host: HTTP/1.0 from loopback (as this is) may omit it; HTTP/1.1 must send one.
    got = raw_request("127.0.0.1", port, b"GET /stats HTTP/1.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 "), got
    got = raw_request("127.0.0.1", port, b"GET /stats HTTP/1.1\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 ") and b"send a Host header" in got, got


def test_a_bearer_token_of_any_bytes_is_refused_cleanly(origin: Origin, make_proxy: Any) -> None:
    secret = "s3cret-é"
    proxy, admin = admin_proxy(make_proxy, "--purge-secret", secret, "--admin-host", "0.0.0.0")
    # http.client sends a str field as latin-1: this is the secret's UTF-8 bytes on the wire.
    sent = "Bearer " + secret.encode().decode("latin-1")
    for token in ("\xff\xfe", "s3cret-\xff", "\x80" * 40, secret):  # the last: é as one byte
        answer, parsed = call(admin + "/stats", headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 403 and parsed == {"error": "wrong secret"}, token
    assert call(admin + "/stats", headers={"Authorization": sent})[0].status == 200
    # The right secret does not lift the checks: they come first.
    assert call(admin + "/stats", headers={"Authorization": sent, "Host": "evil.example"})[0] \
        .status == 421
    assert call(admin + "/clear", "POST", headers={
        "Authorization": sent, "Origin": "http://evil.example"})[0].status == 403
    assert call(admin + "/clear", "POST", headers={
        "Authorization": sent, "Content-Type": "text/plain"})[0].status == 415
    assert not proxy.logged("Traceback", 0.5) and "could not be checked" not in proxy.output
    assert "failed" not in proxy.output


def test_held_half_sent_heads_do_not_lock_out_a_real_request(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    held = [socket.create_connection(("127.0.0.1", admin_port(admin)), timeout=5)
            for _ in range(100)]
    try:
        for s in held:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head never ends
        start = time.monotonic()
        answer, _ = call(admin + "/stats")
        assert answer.status == 200 and time.monotonic() - start < 2
        # Past the cap, those that waited longest were shed, unanswered: the server holds at
        # most MAX_CONNECTIONS of them (the rest it closes after its head timeout).
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + 3
        while len(closed) < len(held) - MAX_CONNECTIONS and time.monotonic() < deadline:
            readable, _, _ = select.select([s for s in held if s not in closed], [], [], 0.2)
            for s in readable:
                with contextlib.suppress(ConnectionResetError):
                    assert s.recv(4096) == b""
                closed.add(s)
        assert len(closed) >= len(held) - MAX_CONNECTIONS
    finally:
        for s in held:
            s.close()
    assert not proxy.logged("Traceback", 0.5)


def test_past_the_cap_with_every_connection_busy_a_new_one_is_answered_503(
        origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy)
    port = admin_port(admin)
    busy = [socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(MAX_CONNECTIONS)]
    try:
        for s in busy:  # each head is whole, its body never ends: busy, so not to be shed
            s.sendall(b"POST /purge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/json\r\nContent-Length: 20\r\n\r\n{")
        time.sleep(1)  # every head read
        start = time.monotonic()
        got = raw_request("127.0.0.1", port, b"")
        assert got.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in got, got
        assert time.monotonic() - start < 1 and b'"error"' in got
    finally:
        for s in busy:
            s.close()
    deadline = time.monotonic() + 3  # their threads end with them
    while call(admin + "/stats")[0].status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not proxy.logged("Traceback", 0.5)


def test_kept_alive_answers_do_not_wait_for_a_delayed_ack(origin: Origin, make_proxy: Any) -> None:
    _, admin = admin_proxy(make_proxy)
    conn = http.client.HTTPConnection("127.0.0.1", admin_port(admin), timeout=10)
    seconds: list[float] = []
    for _ in range(20):
        start = time.perf_counter()
        conn.request("GET", "/stats")
        answer = conn.getresponse()
        answer.read()
        seconds.append(time.perf_counter() - start)
        assert answer.status == 200
    conn.close()
    # With head and body in two writes, each answer waited ~40 ms (Nagle, delayed ACK).
    assert statistics.median(seconds) < 0.02, seconds


class QuickHandler(Handler):
    """The admin handler with deadlines short enough to wait for in a test."""

    head_timeout = 0.6
    idle_timeout = 0.6


class CountingSocket(socket.socket):
    """An accepted connection that counts the writes made to it."""

    writes = 0

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.writes += 1
        super().sendall(data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self.writes += 1
        return super().send(data, flags)


class CountingServer(AdminServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted: list[CountingSocket] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        counted = CountingSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.accepted.append(counted)
        return counted, address


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start AdminServers in this process, on 127.0.0.1, over a real store."""
    store = DiskStore(str(tmp_path / "store"))
    started: list[AdminServer] = []

    def start(server_class: type[AdminServer] = AdminServer,
              handler: type[Handler] = Handler) -> AdminServer:
        server = server_class(("127.0.0.1", 0), store_of=lambda: store, secret="", origin=None,
                              metrics=None, handler=handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()
    store.close()


def closed_after(s: socket.socket) -> float:
    """Seconds until the server closes `s`, reading past whatever it answers."""
    start = time.monotonic()
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    return time.monotonic() - start


def test_slow_heads_bodies_and_idle_connections_are_cut_at_the_deadlines(serve: Any) -> None:
    port = serve(handler=QuickHandler).server_port
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert 0.4 < closed_after(half) < 2
    # A byte every 0.2 s: no read waits long, but the deadline is for the whole head.
    trickle = socket.create_connection(("127.0.0.1", port))
    start = time.monotonic()
    for byte in b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 100:
        if select.select([trickle], [], [], 0.2)[0]:
            break  # the server closed it
        trickle.sendall(bytes([byte]))
    assert 0.4 < time.monotonic() - start < 2 and closed_after(trickle) < 0.5
    slow_body = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow_body.sendall(b"POST /purge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/json\r\nContent-Length: 20\r\n\r\n{")
    assert slow_body.recv(4096).startswith(b"HTTP/1.1 408 ")
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.request("GET", "/stats")
    answer = idle.getresponse()
    assert answer.status == 200 and answer.read()
    assert idle.sock is not None and 0.4 < closed_after(idle.sock) < 2
    for s in (half, trickle, slow_body):
        s.close()
    idle.close()


def test_every_answer_leaves_in_one_write(serve: Any) -> None:
    server = serve(server_class=CountingServer)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
    requests = [("GET", "/stats", None, 200), ("GET", "/entries?limit=5", None, 200),
                ("POST", "/purge", b'{"prefix": "/a/"}', 200), ("POST", "/clear", b"", 200),
                ("GET", "/nowhere", None, 404), ("HEAD", "/stats", None, 200),
                ("POST", "/purge", b"{not json", 400)]
    for i in range(20):
        method, path, body, status = requests[i % len(requests)]
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == status, (method, path)
    conn.close()
    assert len(server.accepted) == 1 and server.accepted[0].writes == 20
    # So do refusals, and the standard library's own errors.
    url = f"http://127.0.0.1:{server.server_port}/stats"
    assert fetch(url, headers={"Host": "evil.example"}).status == 421
    assert fetch(url, method="BREW").status == 501
    assert [s.writes for s in server.accepted[1:]] == [1, 1]
