"""What the proxy says about itself and its client to the origin (X-Forwarded-For,
X-Forwarded-Proto, Via) and to the client (Via): pure functions, no I/O.

Guarantees: an incoming X-Forwarded-For (or X-Forwarded-Proto) is kept only when the peer that
sent it is a trusted proxy; otherwise the origin sees exactly the peer's address and the
connection's scheme. A value that does not parse as a trusted address list is refused when the
option is read, never at request time.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

# RFC 9110 7.6.3: received-protocol (the version is HTTP's) and a pseudonym for the host.
PSEUDONYM = "caching-proxy"
VIA = f"1.1 {PSEUDONYM}"  # on answers: what the proxy received them over from the origin

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks (`10.0.0.0/8`, `::1`); ValueError naming the
    one that is neither. Empty: none."""
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"invalid trusted proxy {part!r}: not an address or CIDR block, "
                             "e.g. 10.0.0.1 or 10.0.0.0/8") from None
    return tuple(found)


def parse_switch(text: str) -> bool:
    """`on` or `off` (the --forwarded values); ValueError otherwise."""
    value = text.strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"invalid cache_forwarded {text!r}: on or off")
    return value == "on"


@functools.lru_cache(maxsize=4096)
def peer_address(host: str) -> str:
    """The peer's address as X-Forwarded-For writes it: an IPv4-mapped IPv6 address as IPv4.
    Remembered: parsing an address took a fifth of what forwarding fields cost a miss."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_trusted(peer: str, trusted: Iterable[Network]) -> bool:
    """Whether `peer` is inside one of `trusted`. False for anything that is not an address:
    a failed check keeps nothing the client sent."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address.version == net.version and address in net for net in trusted)


def forwarded_for(incoming: list[str], peer: str, trusted: bool) -> str:
    """The X-Forwarded-For to send: the incoming list (all its field lines, in order) with
    `peer` appended when `trusted`, else `peer` alone (what an untrusted client claims about
    the hops before it is dropped, as nginx's realip and Varnish do for untrusted peers)."""
    if trusted:
        hops = [h.strip() for line in incoming for h in line.split(",") if h.strip()]
        return ", ".join([*hops, peer])
    return peer

