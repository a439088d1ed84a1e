"""Validation: updating stored responses from 304/HEAD responses (RFC 9111 3.2, 4.3.4, 4.3.5) and
answering the client's own conditional requests from storage (RFC 9111 4.3.2, RFC 9110 13)."""

from __future__ import annotations

from collections.abc import Sequence

from .config import CacheConfig
from .fields import Headers, field_lines, first_value, format_http_date, parse_http_date, split_list
from .storing import storable_headers

# RFC 9111 3.2 excepts Content-Length and lets a cache keep fields its stored response depends
# on. Fields a 304 never changes in storage: they describe the stored bytes (length, coding, digest)
# or name them (ETag), and those bytes are not what the 304 carries. A 304 answering the
# cache's own conditional confirms the stored response; a differing ETag in it is the origin's
# inconsistency and is not taken over (as the HTTP cache tests expect, and nginx does).
_NOT_UPDATED = frozenset({
    "content-length", "content-range", "content-encoding", "content-md5", "content-digest",
    "repr-digest", "etag",
})


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def is_weak(tag: str) -> bool:
    return tag.startswith("W/")


def weak_match(a: str, b: str) -> bool:
    """RFC 9110 8.8.3.2 weak comparison: opaque-tags equal, W/ ignored."""
    return _opaque(a.strip()) == _opaque(b.strip())


def strong_match(a: str, b: str) -> bool:
    """RFC 9110 8.8.3.2 strong comparison: both strong and identical."""
    a, b = a.strip(), b.strip()
    return not is_weak(a) and not is_weak(b) and a == b


def client_not_modified(
    method: str,
    request_headers: Headers,
    stored_headers: Headers,
    response_time: float | None = None,
) -> bool:
    """Whether the client's request, evaluated against the stored response, gets a 304.

    RFC 9111 4.3.2: If-Match and If-Unmodified-Since are not for caches; If-None-Match takes
    precedence over If-Modified-Since (RFC 9110 13.1.3: ignore IMS when INM is present).
    If-Modified-Since compares the stored Last-Modified, else its Date, else `response_time`
    (when the stored response was received), if given: not later than the client's date -> 304.
    """
    # RFC 9110 13.1.2/13.1.3: a 304 is only for GET and HEAD.
    if method not in ("GET", "HEAD"):
        return False
    inm_lines = field_lines(request_headers, "if-none-match")
    if inm_lines:
        tags = [t for line in inm_lines for t in split_list(line)]
        # "*" matches any current representation; we have one.
        if "*" in tags:
            return True
        etag = first_value(stored_headers, "etag")
        return bool(etag) and any(weak_match(t, etag or "") for t in tags)
    ims_lines = field_lines(request_headers, "if-modified-since")
    # 13.1.3: ignored unless exactly one valid HTTP-date.
    if len(ims_lines) != 1:
        return False
    since = parse_http_date(ims_lines[0])
    if since is None:
        return False
    # RFC 9111 4.3.2: without Last-Modified, the stored response's Date stands in (the
    # representation was current then), or without a (valid) Date the time it was received.
    modified = parse_http_date(first_value(stored_headers, "last-modified"))
    if modified is None:
        modified = parse_http_date(first_value(stored_headers, "date"))
    if modified is None:
        modified = response_time
    # RFC 9110 13.1.3: not modified when the modification date is earlier than or equal to the
    # given date.
    return modified is not None and modified <= since


def not_modified_headers(
    stored_headers: Headers, targeted_fields: Sequence[str] = ("cdn-cache-control",)
) -> list[tuple[str, str]]:
    """The fields of a 304 built from the stored response (RFC 9110 15.4.5): Cache-Control,
    Content-Location, Date, ETag, Expires, Vary; Last-Modified only when there is no ETag (15.4.5:
    metadata that guides cache updates); targeted cache-control fields for the same reason."""
    keep = {"cache-control", "content-location", "date", "etag", "expires", "vary"}
    keep.update(n.lower() for n in targeted_fields)
    if first_value(stored_headers, "etag") is None:
        keep.add("last-modified")
    return [(k, v) for k, v in stored_headers if k.lower() in keep]


def freshen_headers(
    stored_headers: Headers,
    validation_headers: Headers,
    *,
    response_time: float | None = None,
    config: CacheConfig | None = None,
) -> list[tuple[str, str]]:
    """RFC 9111 3.2: the stored fields updated from a 304 (or HEAD) response.

    Each field in the new response replaces the stored lines of that name (at the position of the
    first one; new names are appended), except hop-by-hop/proxy fields (3.1), Content-Length and
    Content-Range. Age and Date describe the message, not the representation: the stored Age is
    always dropped, and without a new Date one is generated from `response_time` (RFC 9110 6.6.1)
    or, if not given, the stale stored Date is dropped so `decide_store` falls back to
    response_time. Set-Cookie in a 304 is not taken into storage unless config.cache_set_cookie
    (the same operator policy as storing). Then private="..." fields of the merged response are
    removed again. Recompute the metadata with `decide_store` on the result.
    """
    cfg = config if config is not None else CacheConfig()
    new = [
        (k, v)
        for k, v in storable_headers(validation_headers, cfg.targeted_fields)
        if k.lower() not in _NOT_UPDATED and (cfg.cache_set_cookie or k.lower() != "set-cookie")
    ]
    new_names = {k.lower() for k, _ in new}
    if "date" not in new_names and response_time is not None:
        new.append(("Date", format_http_date(response_time)))
        new_names.add("date")
    replaced = new_names | {"age", "date"}
    merged: list[tuple[str, str]] = []
    placed: set[str] = set()
    for k, v in stored_headers:
        name = k.lower()
        if name not in replaced:
            merged.append((k, v))
        elif name in new_names and name not in placed:
            placed.add(name)
            merged.extend((nk, nv) for nk, nv in new if nk.lower() == name)
    merged.extend((k, v) for k, v in new if k.lower() not in placed)
    return storable_headers(merged, cfg.targeted_fields)


def freshen_from_head(stored_headers: Headers, head_headers: Headers) -> bool:
    """RFC 9111 4.3.5: whether a 200 response to HEAD may update the stored GET response (else
    the stored response should be considered stale).

    Every validator the HEAD response carries must equal the stored one, and a Content-Length it
    carries must equal the stored Content-Length. A HEAD response with no validator at all
    proves nothing about the stored representation, so it does not update (our choice).
    """
    seen_validator = False
    etag = first_value(head_headers, "etag")
    if etag:
        seen_validator = True
        stored_etag = first_value(stored_headers, "etag")
        if not stored_etag or stored_etag != etag:
            return False
    last_modified = first_value(head_headers, "last-modified")
    if last_modified:
        seen_validator = True
        new = parse_http_date(last_modified)
        old = parse_http_date(first_value(stored_headers, "last-modified"))
        if new is None or old is None or new != old:
            return False
    if not seen_validator:
        return False
    length = first_value(head_headers, "content-length")
    return length is None or length == first_value(stored_headers, "content-length")
