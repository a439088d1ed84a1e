"""The admin API's status page (`GET /`, its script `GET /status.js`) and the `/status` figures
it and `--top` read.

The page is read-only and static: HTML and a script of this package, no figure in them, so they
are served with the admin API's Host and Origin checks (and, without a secret, to loopback only)
but without the bearer token, which a browser's address bar cannot send. The script reads
`/status` (which needs the token, like every other endpoint) with the token typed into the
page's own field and kept in sessionStorage (the tab's, gone with it: never in a URL, a log or
the history). Everything is drawn with textContent and SVG elements, never HTML parsed from
data, and the page's Content-Security-Policy allows only this server's script and the one
inline style block by its hash: no inline script, no third-party resource, no frame, no form
posting anywhere.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from caching_proxy.ops.history import History
from caching_proxy.store import Store
from caching_proxy.store.memory.tier import MemoryTier

PAGE_ROUTES = ("/", "/status.js")
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1em; }
td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #ddd; }
th { text-align: left; font-weight: normal; color: #555; }
h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 1.2em; }
#error { color: #a00; } svg { border: 1px solid #ccc; background: #fafafa; }
.rps { stroke: #1f77b4; fill: none; stroke-width: 1.5; }
.ratio { stroke: #2ca02c; fill: none; stroke-width: 1.5; }
"""

PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>caching-proxy status</title>
<style>{STYLE}</style>
<script src="/status.js" defer></script>
</head><body>
<h1>caching-proxy status</h1>
<p id="error"></p>
<form id="auth" autocomplete="off">
<label>Bearer token (--purge-secret; none on loopback without one)
<input id="token" type="password"></label> <button type="submit">Use</button>
</form>
<table id="figures"><tbody></tbody></table>
<h2>Last hour: requests/s (blue), hit ratio (green, 0-100%)</h2>
<svg id="chart" width="720" height="200" viewBox="0 0 720 200" role="img"
 aria-label="requests per second and hit ratio over the last hour"></svg>
<p>p50/p99 latencies are estimates from histogram buckets, over the last minute.</p>
</body></html>
"""

SCRIPT = r"""'use strict';
(function () {
  const KEY = 'caching-proxy-token';
  let previous = null;
  function none(value) { return value === null || value === undefined; }
  function text(value) { return none(value) ? '-' : String(value); }
  function pct(value) { return none(value) ? '-' : (100 * value).toFixed(1) + '%'; }
  function ms(value) { return none(value) ? '-' : (1000 * value).toFixed(1) + ' ms'; }
  function perSecond(now, before, names) {
    if (!before) { return null; }
    const dt = now.at - before.at;
    if (dt <= 0) { return null; }
    let sum = 0;
    for (const name of names) { sum += (now.counts[name] || 0) - (before.counts[name] || 0); }
    return Math.max(0, sum / dt).toFixed(2);
  }
  function rows(s) {
    const w = s.windows || {}, lat = s.latency || {}, hit = lat.hit || {}, origin = lat.origin || {};
    const win = function (name, field) { return w[name] ? w[name][field] : null; };
    const mem = s.memory_tier;
    const out = [
      ['uptime', text(s.uptime_seconds) + ' s'],
      ['hit/s', text(perSecond(s, previous, ['hits', 'collapsed']))],
      ['miss/s', text(perSecond(s, previous, ['misses']))],
      ['revalidated/s', text(perSecond(s, previous, ['revalidated']))],
      ['stale/s', text(perSecond(s, previous, ['stale']))],
      ['pass/s', text(perSecond(s, previous, ['passed']))],
      ['error/s', text(perSecond(s, previous, ['origin_errors']))],
      ['origin answers/s', text(perSecond(s, previous, ['origin_answers']))],
      ['hit ratio 1 min', pct(win('1m', 'hit_ratio'))],
      ['hit ratio 5 min', pct(win('5m', 'hit_ratio'))],
      ['hit ratio 60 min', pct(win('60m', 'hit_ratio'))],
      ['hit latency p50 / p99', ms(hit.p50) + ' / ' + ms(hit.p99)],
      ['origin latency p50 / p99', ms(origin.p50) + ' / ' + ms(origin.p99)],
      ['connections open', text(s.connections_open)],
      ['store entries', text(s.entries)],
      ['store bytes', text(s.bytes)],
      ['evictions', text((s.evicted_expiry || 0) + (s.evicted_lru || 0))],
      ['memory tier', mem ? mem.bytes + ' / ' + mem.max_bytes + ' bytes' : 'off'],
    ];
    return out;
  }
  function show(s) {
    const body = document.querySelector('#figures tbody');
    const made = rows(s).map(function (pair) {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = pair[0];
      td.textContent = pair[1];
      td.id = 'v-' + pair[0].replace(/[^a-z0-9]+/g, '-');
      tr.append(th, td);
      return tr;
    });
    body.replaceChildren.apply(body, made);
    chart(s.series || []);
    previous = s;
  }
  function line(points, cls, value, top) {
    const svg = document.getElementById('chart');
    const el = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    const end = points.length ? points[points.length - 1].at : 0;
    el.setAttribute('class', cls);
    el.setAttribute('points', points.filter(function (p) { return value(p) !== null; }).map(function (p) {
      const x = 720 - (end - p.at) / 3600 * 720;
      const y = 195 - 190 * value(p) / top;
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' '));
    svg.append(el);
  }
  function chart(points) {
    const svg = document.getElementById('chart');
    svg.replaceChildren();
    let top = 1;
    for (const p of points) { top = Math.max(top, p.requests_per_second); }
    line(points, 'rps', function (p) { return p.requests_per_second; }, top);
    line(points, 'ratio', function (p) { return p.hit_ratio; }, 1);
    const label = document.createElementNS('http://www.w3.org/2000/svg', 'text');
    label.setAttribute('x', '4');
    label.setAttribute('y', '14');
    label.textContent = 'max ' + top.toFixed(1) + ' req/s';
    svg.append(label);
  }
  async function poll() {
    const token = sessionStorage.getItem(KEY);
    const headers = token ? { 'Authorization': 'Bearer ' + token } : {};
    try {
      const answer = await fetch('/status', { headers: headers, cache: 'no-store', credentials: 'omit' });
      const data = await answer.json();
      if (!answer.ok) { throw new Error(data.error || String(answer.status)); }
      document.getElementById('error').textContent = '';
      show(data);
    } catch (e) {
      document.getElementById('error').textContent = 'cannot read /status: ' + e.message;
    }
  }
  document.addEventListener('DOMContentLoaded', function () {
    document.getElementById('auth').addEventListener('submit', function (event) {
      event.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById('token').value);
      document.getElementById('token').value = '';
      poll();
    });
    poll();
    setInterval(poll, 2000);
  });
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_POLICY = (f"default-src 'none'; script-src 'self'; style-src {_hash(STYLE)}; "
               "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
# Every other answer (JSON, the script, Prometheus text) is data: nothing in it may run.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"


def page(path: str) -> tuple[bytes, str]:
    """The body and Content-Type of a PAGE_ROUTES path."""
    return (PAGE.encode(), HTML) if path == "/" else (SCRIPT.encode(), JS)


def headers_for(content_type: str) -> dict[str, str]:
    """The security headers of an admin answer of `content_type`."""
    return {"Content-Security-Policy": PAGE_POLICY if content_type == HTML else DATA_POLICY,
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"}


def memory_tier_of(store: Store) -> dict[str, Any]:
    """`memory_tier` for /stats: this process's copies (bytes against max_bytes, reads it
    answered and missed); None when the store has no memory tier."""
    tier = store.backend
    if not isinstance(tier, MemoryTier):
        return {"memory_tier": None}
    return {"memory_tier": {"bytes": tier.bytes, "max_bytes": tier.max_bytes,
                            "hits": tier.hits, "misses": tier.misses}}


def status_of(stats: dict[str, Any], history: History) -> dict[str, Any]:
    """`/status`: `stats` (what /stats says) with the history's figures, and this moment's
    cumulative `counts` with their time `at`, from which a poller (the page, `--top`) takes
    rates between two polls."""
    now = history.reader(history.clock())
    found = {**stats, **history.figures(now)}
    if now is not None:
        found.update(at=now.at, counts=now.counts)
    return found
