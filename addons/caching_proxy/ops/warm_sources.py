"""What `--warm` fetches: the targets of a list file, a local sitemap, or a sitemap on the
origin (a sitemap index followed one level down), read without touching the store."""

from __future__ import annotations

import gzip
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit, uncompressed


class WarmError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


Get = Callable[[str], Answer]


def target_of(text: str) -> str | None:
    """The request target for a /path or an http(s) URL (its path and query); else None."""
    if text.startswith("/"):
        return text
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return None


def unique(targets: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(targets))


def list_targets(text: str, name: str) -> list[str]:
    targets = []
    for number, raw in enumerate(text.splitlines(), 1):
        # `#` starts a comment, also after a URL: a fragment is never sent to a server.
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        target = target_of(line)
        if target is None or any(c.isspace() for c in line):
            raise WarmError(f"{name}, line {number}: {line!r} is neither a /path nor an "
                            "http(s) URL", 2)
        targets.append(target)
    return unique(targets)


def xml_bytes(data: bytes) -> bytes:
    """A sitemap's bytes, gunzipped when gzip (sitemap.xml.gz), at most MAX_SITEMAP_BYTES."""
    if data[:2] != b"\x1f\x8b":
        return data
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        out = f.read(MAX_SITEMAP_BYTES + 1)
    if len(out) > MAX_SITEMAP_BYTES:
        raise ValueError("larger than 50 MiB uncompressed")
    return out


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def sitemap_targets(data: bytes, name: str, get: Get, depth: int = 0) -> list[str]:
    """The <loc> URLs of a urlset, as request targets; those of each sitemap of an index."""
    try:
        # Python's expat refuses entity expansion bombs (billion laughs) itself.
        root = ET.fromstring(xml_bytes(data))
    except (ET.ParseError, ValueError, OSError) as e:
        raise WarmError(f"{name}: not a sitemap: {e}", 1) from None
    locs = [(e.text or "").strip() for e in root.iter() if local_name(e.tag) == "loc"]
    kind = local_name(root.tag)
    if kind == "sitemapindex" and depth == 0:
        targets: list[str] = []
        for loc in locs:
            targets += sitemap_targets(fetch_sitemap(loc, get), loc, get, depth + 1)
        return unique(targets)
    if kind != "urlset":
        raise WarmError(f"{name}: not a sitemap (its root is <{kind}>, not <urlset>)", 1)
    return unique(t for t in map(target_of, locs) if t is not None)


def fetch_sitemap(where: str, get: Get) -> bytes:
    target = target_of(where)
    if target is None:
        raise WarmError(f"{where}: not a /path or URL", 2)
    try:
        answer = get(target)
    except OSError as e:
        raise WarmError(f"cannot fetch sitemap {target}: {e}", 1) from None
    if answer.status != 200:
        raise WarmError(f"cannot fetch sitemap {target}: the proxy answered {answer.status}", 1)
    return answer.body


def load_targets(source: str, get: Get) -> list[str]:
    """A local file wins over a path on the origin of the same name."""
    path = Path(source)
    if path.is_file():
        data = path.read_bytes()
        if data.lstrip()[:1] == b"<" or data[:2] == b"\x1f\x8b":
            return sitemap_targets(data, source, get)
        return list_targets(data.decode("utf-8", "replace"), source)
    if target_of(source) is not None:
        return sitemap_targets(fetch_sitemap(source, get), source, get)
    raise WarmError(f"--warm {source}: no such file (a sitemap on the origin is given by its "
                    "path, e.g. /sitemap.xml)", 2)
