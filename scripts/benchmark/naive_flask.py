"""The naive approach caching-proxy replaces: a Flask app that forwards with `requests` and keeps
response bodies in a dict, forever, with no HTTP caching rules. Benchmarked for comparison only.

Origin from the environment (NAIVE_ORIGIN), so gunicorn can load `benchmark.naive_flask:app`;
`python -m benchmark.naive_flask --port P` runs it under Flask's development server.
"""

from __future__ import annotations

import argparse
import logging
import os

import requests
from flask import Flask, Response, request

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-encoding",
                        "content-length"})

app = Flask(__name__)
origin = os.environ.get("NAIVE_ORIGIN", "http://127.0.0.1:8080")
cache: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}


@app.route("/", defaults={"path": ""})
@app.route("/<path:path>")
def proxy(path: str) -> Response:
    key = request.full_path
    hit = key in cache
    if not hit:
        upstream = requests.get(origin + key, timeout=30)
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
        cache[key] = (upstream.status_code, headers, upstream.content)
    status, headers, body = cache[key]
    return Response(body, status, [*headers, ("X-Cache", "HIT" if hit else "MISS")])


def main() -> None:
    parser = argparse.ArgumentParser(description="naive Flask cache, Flask development server")
    parser.add_argument("--port", type=int, required=True)
    # Per-request log lines would slow the baseline down; the benchmark compares against its best.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=parser.parse_args().port, threaded=True)


if __name__ == "__main__":
    main()
