"""Content codings: which one a request accepts, and what is worth compressing (pure).

`Vary: Accept-Encoding` would split the cache by every distinct Accept-Encoding string clients
send (browsers `gzip, deflate, br, zstd`, curl none, Python `gzip, deflate`). As Fastly does,
and the usual Varnish configuration, the cache rewrites Accept-Encoding before it keys or
forwards the request: to the first coding of a configured list that the client accepts, else to
none. An origin's `Vary: Accept-Encoding` then makes at most that many variants plus one.
"""

from __future__ import annotations

import importlib.util

from .fields import split_list

# What the proxy can decode and encode (brotli and zstandard come with mitmproxy).
KNOWN_CODINGS = ("br", "gzip", "zstd")
ALIASES = {"x-gzip": "gzip"}  # RFC 9110 8.4.1.3


def default_codings() -> tuple[str, ...]:
    """br and gzip, and zstd where the zstandard library is installed."""
    zstd = importlib.util.find_spec("zstandard") is not None
    return ("br", "gzip", "zstd") if zstd else ("br", "gzip")


def parse_codings(text: str) -> tuple[str, ...]:
    """A comma-separated list of codings (`off` or empty: no normalization); ValueError names
    one the proxy cannot decode."""
    if text.strip().lower() in ("", "off"):
        return ()
    codings = tuple(dict.fromkeys(c.strip().lower() for c in text.split(",") if c.strip()))
    for coding in codings:
        if coding not in KNOWN_CODINGS:
            raise ValueError(f"unknown content coding {coding!r} (known: "
                             f"{', '.join(KNOWN_CODINGS)})")
    return codings


def accepted(accept_encoding: str | None, preferred: tuple[str, ...]) -> str | None:
    """The first of `preferred` that an Accept-Encoding value accepts (RFC 9110 12.5.3: q > 0,
    or `*` for a coding not named), or None (identity only; also when the field is absent,
    which in practice means a client that cannot decode, as Fastly reads it)."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for element in split_list(accept_encoding):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # an unreadable weight: not relied on
        weights[ALIASES.get(coding, coding)] = q
    star = weights.get("*", 0.0)
    for coding in preferred:
        if weights.get(coding, star) > 0:
            return coding
    return None


COMPRESSIBLE_PREFIXES = ("text/",)
COMPRESSIBLE_TYPES = frozenset({
    "application/json", "application/javascript", "application/x-javascript",
    "application/ecmascript", "application/xml", "application/xhtml+xml", "application/rss+xml",
    "application/atom+xml", "application/ld+json", "application/manifest+json",
    "application/wasm", "image/svg+xml", "application/x-www-form-urlencoded",
})
MIN_COMPRESS_LENGTH = 256  # smaller bodies gain less than the coding's own bytes (nginx: 20)


def compressible(content_type: str | None, content_encoding: str | None, length: int) -> bool:
    """Whether `--compress` compresses a body of this type, coding and length: text, JSON,
    JavaScript, XML and SVG, sent without a coding (nginx gzip_types, with its usual list)."""
    if content_encoding not in (None, "", "identity") or length < MIN_COMPRESS_LENGTH:
        return False
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media.startswith(COMPRESSIBLE_PREFIXES) or media in COMPRESSIBLE_TYPES or (
        media.endswith("+json") or media.endswith("+xml"))
