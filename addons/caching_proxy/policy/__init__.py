"""The caching policy of caching-proxy: RFC 9111 for a shared cache, with RFC 5861, 8246, 9211 and
9213. Pure functions of (request, stored response metadata, now): no mitmproxy, no diskcache, no
I/O, no clock. Everything a hit needs is computed once at store time into `StoredMeta`.

Modules: fields (header access, HTTP-dates), structured (RFC 8941), directives (Cache-Control,
Pragma, targeted fields), freshness (4.2), storing (3), lookup (4, 5.2.1, RFC 5861), validation
(3.2, 4.3), vary (4.1), invalidation (4.4), cache_status (RFC 9211), config.

Why not hishel
--------------
hishel 1.4.0 (BSD-3-Clause, classified Alpha) has a sans-I/O core, but it is the private module
`hishel._core._spec`: a 2100-line state machine over hishel's own Request/Response/Entry models,
so we would convert every flow into its types and chase a private API across releases. It covers
a shared cache, s-maxage, Authorization (3.5) and no-cache/private field lists. It lacks RFC 9213
(no CDN-Cache-Control at all), stale-while-revalidate/stale-if-error (parsed, never acted on;
stale serving is a single `allow_stale` switch), Vary normalization (raw equality of one field
line: "gzip,br" != "gzip, br", repeated lines not combined), 4.4 invalidation (unsafe methods are
just forwarded) and a default TTL (its heuristic is a fixed 10% capped at a week). Those gaps are
most of what we need, so we write our own small policy.

What the addon should do with it
--------------------------------
* Lookup: `bypass_reason()` first (non-GET/HEAD, Range, Cookie). HEAD is answered from the
  stored GET. `evaluate(parse_request_directives(h), meta, now)` (returns the shared
  NO_DIRECTIVES when the request has neither Cache-Control nor Pragma).
* MISS/REVALIDATE: remove the client's CONDITIONAL_REQUEST_FIELDS from the forwarded request (as
  nginx's proxy_cache does) and add `Lookup.conditional_headers`; then answer the client's own
  conditionals with `client_not_modified()` / `not_modified_headers()`.
* After a 304 to the cache's own conditional: store `freshen_headers(stored, h304,
  response_time=t)` with metadata from `decide_store()` run on those headers and the
  revalidation request's headers, with the new request/response times (if that now refuses,
  e.g. "no-store", serve the validated response this once and delete the entry).
* Errors (origin unreachable, 500, 502, 503, 504): `can_serve_stale_on_error()`, and with the
  operator's proxy_cache_use_stale-like conditions `serve_stale_on_failure()` (stale.py).
* Store what `storable_headers()` returns; serve with `serve_headers()`. Age is the addon's.
* After every non-GET/HEAD exchange: delete each of `invalidation_uris()` (all its variants).
* Forward CDN-Cache-Control, Cache-Control and Expires untouched (see directives.py).
"""

from .cache_status import cache_status
from .config import CacheConfig
from .directives import (
    NO_DIRECTIVES,
    RequestDirectives,
    ResponseDirectives,
    parse_request_directives,
    response_directives,
)
from .fields import Headers, field_values, format_http_date, parse_http_date
from .invalidation import SAFE_METHODS, invalidation_uris
from .lookup import (
    CACHE_ANSWERED_FIELDS,
    CONDITIONAL_REQUEST_FIELDS,
    VALIDATING_FIELDS,
    Action,
    Lookup,
    bypass_reason,
    can_serve_stale_on_error,
    evaluate,
    serve_headers,
)
from .rules import (
    IGNORABLE,
    Rule,
    find_rule,
    key_target,
    override_detail,
    parse_statuses,
    rule_bypass,
    rule_config,
    stripped_fields,
)
from .stale import (
    ERROR_STATUSES,
    USE_STALE_CONDITIONS,
    failure_of_status,
    parse_use_stale,
    serve_stale_on_failure,
)
from .storing import StoreDecision, StoredMeta, decide_store, storable_headers
from .validation import (
    client_not_modified,
    freshen_from_head,
    freshen_headers,
    not_modified_headers,
)
from .vary import ABSENT, vary_key

__all__ = [
    "ABSENT",
    "CACHE_ANSWERED_FIELDS",
    "CONDITIONAL_REQUEST_FIELDS",
    "ERROR_STATUSES",
    "IGNORABLE",
    "NO_DIRECTIVES",
    "SAFE_METHODS",
    "USE_STALE_CONDITIONS",
    "VALIDATING_FIELDS",
    "Action",
    "CacheConfig",
    "Headers",
    "Lookup",
    "RequestDirectives",
    "ResponseDirectives",
    "Rule",
    "StoreDecision",
    "StoredMeta",
    "bypass_reason",
    "cache_status",
    "can_serve_stale_on_error",
    "client_not_modified",
    "decide_store",
    "evaluate",
    "failure_of_status",
    "field_values",
    "find_rule",
    "format_http_date",
    "freshen_from_head",
    "freshen_headers",
    "invalidation_uris",
    "key_target",
    "not_modified_headers",
    "override_detail",
    "parse_http_date",
    "parse_request_directives",
    "parse_statuses",
    "parse_use_stale",
    "response_directives",
    "rule_bypass",
    "rule_config",
    "serve_headers",
    "serve_stale_on_failure",
    "storable_headers",
    "stripped_fields",
    "vary_key",
]
