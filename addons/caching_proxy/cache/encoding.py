"""Content codings applied by the proxy (policy/encoding.py decides when): the request's
Accept-Encoding normalized, a stored variant decoded for a client that accepts none of its
codings (Varnish's http_gzip_support, for gzip, br and zstd), and `--compress` at store time.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import replace

import brotli
import zstandard
from mitmproxy import http

from caching_proxy.policy.encoding import accepted
from caching_proxy.store.entry import Entry, encode_headers

# Levels of nginx's and Fastly's usual settings: fast enough to run on the event loop for
# bodies up to the off-loop bound, most of the size gain.
GZIP_LEVEL, BROTLI_QUALITY, ZSTD_LEVEL = 6, 5, 3
MAX_COMPRESS = 1 << 20  # larger bodies are stored as sent: compressing them would stall the loop
_NORMALIZED: dict[str | None, str | None] = {}
_NORMALIZED_LIMIT = 1024


def normalize_request(request: http.Request, preferred: tuple[str, ...]) -> str | None:
    """Rewrite the request's Accept-Encoding to the one coding the cache keys and forwards
    (removed when it accepts none of `preferred`); that coding."""
    raw = request.headers.get("accept-encoding")
    try:
        coding = _NORMALIZED[raw]
    except KeyError:
        coding = accepted(raw, preferred)
        if len(_NORMALIZED) >= _NORMALIZED_LIMIT:
            _NORMALIZED.clear()  # clients sent many distinct values: start again
        _NORMALIZED[raw] = coding
    if coding is None:
        if raw is not None:
            del request.headers["accept-encoding"]
    elif raw != coding:
        request.headers["Accept-Encoding"] = coding
    return coding


def encode(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, GZIP_LEVEL, mtime=0)
    if coding == "br":
        return bytes(brotli.compress(body, quality=BROTLI_QUALITY))
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)
    raise ValueError(f"cannot encode {coding!r}")


def decode(body: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    raise ValueError(f"cannot decode {coding!r}")


def weak(etag: str) -> str:
    return etag if etag.startswith("W/") else "W/" + etag


def decoded(entry: Entry) -> Entry | None:
    """`entry` as a client that accepts none of its codings gets it: decoded, without
    Content-Encoding, with the decoded length and a weak ETag (the bytes differ, RFC 9110
    8.8.3), Vary kept; None when its coding is unknown or its body does not decode."""
    fields = entry.text_headers()
    codings = [v.strip().lower() for k, v in fields if k.lower() == "content-encoding"]
    if len(codings) != 1 or "," in codings[0]:
        return None
    try:
        body = decode(entry.body, codings[0])
    except (ValueError, OSError, EOFError, zlib.error, brotli.error, zstandard.ZstdError):
        return None
    kept: list[tuple[str, str]] = []
    for name, value in fields:
        low = name.lower()
        if low == "content-encoding":
            continue
        if low == "content-length":
            value = str(len(body))
        elif low == "etag":
            value = weak(value)
        kept.append((name, value))
    return replace(entry, headers=encode_headers(kept), body=body, hit_headers=())


def compress_response(response: http.Response, coding: str) -> bool:
    """Compress a whole response held in memory with `coding`, as it will be stored and sent:
    Content-Encoding and Content-Length set, Vary gains Accept-Encoding, a strong ETag made
    weak. Whether it did (bodies over MAX_COMPRESS, or that do not shrink, are left alone)."""
    body = response.raw_content
    if body is None or len(body) > MAX_COMPRESS:
        return False
    packed = encode(bytes(body), coding)
    if len(packed) >= len(body):
        return False
    response.raw_content = packed
    response.headers["Content-Encoding"] = coding
    response.headers["Content-Length"] = str(len(packed))
    varies = [v for v in response.headers.get_all("vary")]
    names = {n.strip().lower() for v in varies for n in v.split(",")}
    if "accept-encoding" not in names and "*" not in names:
        response.headers.set_all("Vary", [*varies, "Accept-Encoding"] if varies
                                 else ["Accept-Encoding"])
    etag = response.headers.get("etag")
    if etag:
        response.headers["ETag"] = weak(etag)
    return True


def identity_alternatives(headers: list[tuple[str, str]],
                          preferred: tuple[str, ...]) -> list[list[tuple[str, str]]]:
    """The request's headers as if it accepted each of `preferred` in turn: the variants a
    decoded answer may come from."""
    base = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
    return [[*base, ("Accept-Encoding", coding)] for coding in preferred]

