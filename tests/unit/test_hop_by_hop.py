"""Hop-by-hop fields (RFC 9110 7.6.1) and underscore fields, taken out of a message in place."""

from __future__ import annotations

from mitmproxy import http

from caching_proxy.edge import hop_by_hop


def headers(*fields: tuple[str, str]) -> http.Headers:
    return http.Headers([(k.encode(), v.encode()) for k, v in fields])


def names(h: http.Headers) -> list[str]:
    return [k.decode() for k, _ in h.fields]


def test_the_fixed_fields_and_what_connection_names_go() -> None:
    h = headers(("Host", "a"), ("Connection", "X-Secret, keep-alive"), ("X-Secret", "1"),
                ("Keep-Alive", "300"), ("TE", "trailers"), ("Trailer", "X"),
                ("Proxy-Connection", "keep-alive"), ("Upgrade", "h2c"), ("Accept", "*/*"))
    assert hop_by_hop.strip(h)
    # The proxy's own option stays (mitmproxy reads it to keep the connection), nothing else.
    assert h.fields == ((b"Host", b"a"), (b"Connection", b"keep-alive"), (b"Accept", b"*/*"))


def test_framing_and_routing_fields_are_never_named_away() -> None:
    h = headers(("Host", "a"), ("Content-Length", "2"), ("Connection", "close, Host, "
                                                         "Content-Length, Transfer-Encoding"))
    hop_by_hop.strip(h)
    assert h.fields == ((b"Host", b"a"), (b"Content-Length", b"2"), (b"Connection", b"close"))


def test_an_upgrade_keeps_its_two_fields() -> None:
    h = headers(("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Keep-Alive", "1"))
    hop_by_hop.strip(h)  # a request: it asks for the upgrade itself
    assert names(h) == ["Connection", "Upgrade"]
    granted = headers(("Connection", "Upgrade"), ("Upgrade", "websocket"), ("TE", "x"))
    hop_by_hop.strip(granted, upgrade=True)  # a 101
    assert names(granted) == ["Connection", "Upgrade"]
    plain = headers(("Upgrade", "websocket"))  # without Connection: upgrade it is not one
    hop_by_hop.strip(plain)
    assert names(plain) == []


def test_underscore_fields_go_only_when_asked() -> None:
    h = headers(("X_Forwarded_Host", "evil"), ("Accept_Encoding", "gzip"), ("X-Ok", "1"))
    assert not hop_by_hop.strip(headers(("X_Forwarded_Host", "evil")))
    assert hop_by_hop.strip(h, underscores=True)
    assert names(h) == ["X-Ok"]


def test_nothing_to_take_changes_nothing() -> None:
    h = headers(("Host", "a"), ("Accept", "*/*"))
    before = h.fields
    assert not hop_by_hop.strip(h, underscores=True)
    assert h.fields is before


def test_a_request_says_itself_whether_it_asks_for_an_upgrade() -> None:
    asks = headers(("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket"), ("TE", "x"))
    hop_by_hop.strip(asks)
    assert names(asks) == ["Connection", "Upgrade"]
    granted_not = headers(("Connection", "Upgrade"), ("Upgrade", "websocket"))
    hop_by_hop.strip(granted_not, upgrade=False)  # a response that is no 101
    assert names(granted_not) == []
