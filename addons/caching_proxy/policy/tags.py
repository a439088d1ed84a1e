"""Cache tags (surrogate keys): the names an origin gives a response so that it can be purged
with everything else that shows the same thing.

Fastly and Souin read `Surrogate-Key` (tags separated by spaces), Cloudflare `Cache-Tag` (tags
separated by commas); a field the operator names (`--tag-header`) may use either separator.
The fields are for the cache: like Fastly, the cache removes them from what clients receive.
"""

from __future__ import annotations

import re

from .fields import Headers

DEFAULT_TAG_FIELDS = ("Surrogate-Key", "Cache-Tag")
# Fastly limits a surrogate key to 1024 bytes, Cloudflare a tag to 1024 characters.
MAX_TAG_LENGTH = 1024
# Cloudflare: at most 16 KB of Cache-Tag per response; Fastly 16 KB of Surrogate-Key.
MAX_TAGS = 1024
_SEPARATORS = re.compile(r"[\s,]+")


def parse_tags(value: str) -> list[str]:
    """The tags in one field value: separated by whitespace and/or commas, empties dropped."""
    return [t for t in _SEPARATORS.split(value) if t]


def tags_of(headers: Headers, field_names: tuple[str, ...]) -> tuple[str, ...]:
    """The tags of a response, from every line of each of `field_names` (case-insensitive), in
    order of appearance, without duplicates. Tags over MAX_TAG_LENGTH are dropped (no purge
    could name them usefully); past MAX_TAGS the rest are ignored."""
    wanted = {name.lower() for name in field_names}
    found: dict[str, None] = {}
    for name, value in headers:
        if name.lower() not in wanted:
            continue
        for tag in parse_tags(value):
            if len(tag) <= MAX_TAG_LENGTH and len(found) < MAX_TAGS:
                found.setdefault(tag)
    return tuple(found)


def without_fields(headers: Headers, field_names: tuple[str, ...]) -> list[tuple[str, str]]:
    """`headers` less every line of `field_names` (case-insensitive)."""
    dropped = {name.lower() for name in field_names}
    return [(k, v) for k, v in headers if k.lower() not in dropped]
