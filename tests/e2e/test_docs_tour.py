"""The README's five-minute tour, run as written against a real proxy and a counting test origin.

Each command of the tour's code blocks runs in order (curl through bash when curl is installed,
else the same request made here; `./scripts/caching-proxy ...` as the CLI), and what it prints
must be what the README shows under it in `# ` lines. The README's addresses stand for the
test's: the proxy's `http://127.0.0.1:3000`, the origin `http://dummyjson.com` (keyed with its
port), mitmweb's port 8081. Numbers that depend on the clock or the origin (`ttl=`, `Age`, the
store's bytes) are compared by shape.
"""

from __future__ import annotations

import http.client
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support.origin import Origin, free_port
from support.proxy import Proxy, cli
from support.web import WebSession

README = Path(__file__).resolve().parents[2] / "README.md"
PROXY, ORIGIN, WEB = "http://127.0.0.1:3000", "http://dummyjson.com", "http://127.0.0.1:8081"
START = "./scripts/caching-proxy --port 3000 --origin http://dummyjson.com"
# What may differ from the README's example output: the clock's and the origin's numbers.
VARYING = [(re.compile(r"ttl=-?\d+"), "ttl=N"), (re.compile(r"^Age: \d+$"), "Age: N"),
           (re.compile(r"^bytes +[\d.]+ \S+$"), "bytes N"),
           (re.compile(r"^bytes served +[\d.]+ \S+$"), "bytes served N")]


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def tour_text() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## A five-minute tour")
    return text[start:text.index("\n## ", start + 1)]


def tour_steps() -> list[Step]:
    """Every command of the tour's code blocks, with the `# ` lines that follow it."""
    steps: list[Step] = []
    for block in re.findall(r"```sh\n(.*?)```", tour_text(), flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("# "):
                steps[-1].expected.append(line[2:])
            elif line.strip():
                steps.append(Step(line.strip()))
    return steps


def shape(line: str) -> str:
    line = line.rstrip()
    for pattern, replacement in VARYING:
        line = pattern.sub(replacement, line)
    return line


@dataclass
class Tour:
    origin: Origin
    proxy: Proxy
    cache_dir: Path

    def substitute(self, text: str) -> str:
        host = urlsplit(self.origin.url)
        return (text.replace(PROXY, self.proxy.url)
                .replace(ORIGIN + ":80", f"http://{host.hostname}:{host.port}")
                .replace(ORIGIN, self.origin.url))


@pytest.fixture
def tour(origin: Origin, tmp_path: Path) -> Iterator[Tour]:
    origin.route("/products/1", 200, [("Content-Type", "application/json"),
                                      ("Cache-Control", "max-age=300")],
                 b'{"id": 1, "title": "Essence Mascara Lash Princess"}')
    cache_dir = tmp_path / "cache"
    with Proxy(origin.url, cache_dir) as proxy:
        yield Tour(origin, proxy, cache_dir)


def curl(command: str) -> list[str]:
    """What `command` (curl, maybe piped into grep) prints: run by bash when curl exists."""
    if shutil.which("curl") and shutil.which("grep"):
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        return done.stdout.splitlines()
    return emulated_curl(command)


def emulated_curl(command: str) -> list[str]:
    """The tour's curl forms (-s, -i, -X, -o /dev/null, -w '%{http_code}\\n', | grep -i -e ...)
    with http.client, for a machine without curl."""
    request, _, filtered = command.partition("|")
    args = shlex.split(request)[1:]
    method, url, show_head, body_out, write_out = "GET", "", False, True, ""
    while args:
        arg = args.pop(0)
        if arg == "-X":
            method = args.pop(0)
        elif arg == "-o":
            body_out = args.pop(0) != "/dev/null"
        elif arg == "-w":
            write_out = args.pop(0)
        elif arg.startswith("-") and not arg.startswith("--"):
            show_head = show_head or "i" in arg
        else:
            url = arg
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request(method, parts.path or "/")
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        head = [f"HTTP/1.1 {response.status} {response.reason}",
                *(f"{k}: {v}" for k, v in response.getheaders()), ""]
    finally:
        conn.close()
    text = ("\n".join(head) + "\n" if show_head else "") + (body if body_out else "")
    text += write_out.replace("%{http_code}", str(response.status)).replace("\\n", "\n")
    lines = text.splitlines()
    if filtered:
        words = shlex.split(filtered)[1:]  # after `grep`: -i, then `-e PATTERN`s or one PATTERN
        patterns = [words[i + 1] for i, w in enumerate(words) if w == "-e"] or [
            w for w in words if not w.startswith("-")]
        lines = [line for line in lines
                 if any(re.search(p, line, flags=re.IGNORECASE) for p in patterns)]
    return lines


def run_cli(tour: Tour, command: str, expected: list[str]) -> list[str]:
    """A one-shot command on the tour's store; --stats is read again until the counters the
    proxy writes once a second are in."""
    args = [*shlex.split(command)[1:], "--cache-dir", str(tour.cache_dir)]
    deadline = time.monotonic() + 10
    while True:
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        if "--stats" not in args or [shape(x) for x in lines] == expected or (
                time.monotonic() > deadline):
            return lines
        time.sleep(0.2)


def test_the_tour_prints_what_the_readme_says(tour: Tour) -> None:
    steps = tour_steps()
    # The tour starts the proxy with the set-up command, which the proxy fixture stands for.
    assert START in README.read_text(encoding="utf-8")
    assert "Start the proxy with the first command above" in tour_text()
    banner = (f"caching-proxy: listening on {tour.proxy.url}, origin {tour.origin.url}, "
              f"cache {tour.cache_dir}")
    said = " ".join(tour_text().split())
    assert f"`caching-proxy: listening on {PROXY}, origin {ORIGIN}, cache ...`" in said
    assert tour.proxy.logged(banner)
    ran = []
    for step in steps:
        if "--web" in step.command.split():
            continue  # test_the_tour_under_mitmweb
        expected = [shape(tour.substitute(line)) for line in step.expected]
        if step.command.startswith("curl "):
            printed = curl(tour.substitute(step.command))
        else:
            assert step.command.startswith("./scripts/caching-proxy "), step.command
            printed = run_cli(tour, step.command, expected)
        assert [shape(line) for line in printed] == expected, step.command
        ran.append(step.command)
    # The tour's story: a MISS, a HIT, a purge, a MISS again, --stats, a purge from the CLI.
    assert [c.split()[0] for c in ran] == ["curl"] * 5 + ["./scripts/caching-proxy"] * 2
    assert tour.origin.count("/products/1") == 2


def test_the_tour_under_mitmweb(origin: Origin, tmp_path: Path) -> None:
    web = next(s for s in tour_steps() if "--web" in s.command.split())
    assert web.command == START + " --web"
    assert f"inspect at {WEB}" in tour_text()
    origin.route("/products/1", 200, [("Cache-Control", "max-age=300")], b'{"id": 1}')
    port = free_port()
    with Proxy(origin.url, tmp_path / "cache", "--web", "--web-port", str(port)) as proxy:
        assert proxy.logged(f", inspect at http://127.0.0.1:{port}")
        for _ in range(2):
            with urllib.request.urlopen(proxy.url + "/products/1", timeout=10) as r:
                r.read()
        # Opened as the tour says: the start-up line's URL (with mitmproxy 12's token).
        flows = WebSession(proxy).get_json("/flows")
    marks = [(f["marked"], f["comment"]) for f in flows]
    assert marks == [("🌐", "cache MISS (stored)"), ("💾", "cache HIT")]
    for marker, comment in marks:  # what the README says the markers and comments are
        assert marker in tour_text() and comment.split(" (")[0] in tour_text()
