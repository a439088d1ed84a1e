"""`--list` (issue 33, item 10) on a real proxy's store: each Vary variant's field values, an
absent field as null (never the store's internal marker), `--limit N`, and a reader that stops
(`--list --json | head`) ending the command quietly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.client import fetch
from support.origin import Origin
from support.proxy import ROOT, Proxy, _env, cli

VARY = [("Cache-Control", "max-age=300"), ("Vary", "Accept, X-Lang")]


def test_variants_show_their_field_values(origin: Origin, proxy: Proxy) -> None:
    origin.route("/v", 200, VARY, b"v")
    fetch(proxy.url + "/v", headers={"Accept": "a/b", "X-Lang": "fr"})
    fetch(proxy.url + "/v", headers={"Accept": "c/d"})
    done = cli("--cache-dir", str(proxy.cache_dir), "--list", "--json")
    assert done.returncode == 0, done.stderr
    assert "absent" not in done.stdout and "\\u0000" not in done.stdout
    rows = json.loads(done.stdout)["entries"]
    assert sorted((r["variants"], json.dumps(r["vary"], sort_keys=True)) for r in rows) == [
        (2, '{"accept": "a/b", "x-lang": "fr"}'), (2, '{"accept": "c/d", "x-lang": null}')]
    table = cli("--cache-dir", str(proxy.cache_dir), "--list").stdout.splitlines()
    assert table[0].split()[-1] == "VARY" and len(table) == 3
    assert sorted(line.split("  ")[-1].strip() for line in table[1:]) == [
        "accept=a/b x-lang=fr", "accept=c/d x-lang"]


def test_limit_keeps_the_first_rows(origin: Origin, proxy: Proxy) -> None:
    for n in range(5):
        origin.route(f"/l{n}", 200, [("Cache-Control", "max-age=300")], b"l")
        fetch(proxy.url + f"/l{n}")
    done = cli("--cache-dir", str(proxy.cache_dir), "--list", "--json", "--limit", "2")
    assert done.returncode == 0, done.stderr
    assert [r["url"].rsplit("/", 1)[1] for r in json.loads(done.stdout)["entries"]] == [
        "l0", "l1"]
    assert cli("--cache-dir", str(proxy.cache_dir), "--list", "--limit", "0").stdout.startswith(
        "caching-proxy: no stored responses")
    bad = cli("--cache-dir", str(proxy.cache_dir), "--list", "--limit", "-1")
    assert bad.returncode == 2 and "--limit" in bad.stderr and "-1" in bad.stderr


def test_list_json_into_head_ends_quietly(origin: Origin, proxy: Proxy, tmp_path: Path) -> None:
    for n in range(300):  # a listing of several pipe buffers: head closes it mid-way
        origin.route(f"/h{n}", 200, [("Cache-Control", "max-age=300")], b"h")
    for n in range(300):
        fetch(proxy.url + f"/h{n}")
    shell = (f"{sys.executable} -m caching_proxy --cache-dir {proxy.cache_dir} --list --json "
             "| head -n 3; echo \"status ${PIPESTATUS[0]}\"")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=60)
    assert done.stdout.splitlines()[:2] == ["{", f'  "store": "{proxy.cache_dir}",'], done.stdout
    assert done.stdout.splitlines()[-1] == "status 0"
    assert done.stderr == ""
