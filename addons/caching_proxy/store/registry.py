"""Which backend a store location names: every backend registered by URL scheme, here.

`register(scheme, opener)` makes `open_location` (and so store.open_store) open a location that
starts with `scheme:` with `opener(location, options)`: the Store (store/layout.py) over the
backend it opens, `Store(MyBackend(...))`. A location with no registered scheme is a diskcache
folder (a plain path, as always). The built-in schemes are registered at the bottom
of this module, the one place that knows them:

- `file:` (`file:///var/cache/proxy`, `file:relative`) and any plain path: a diskcache folder.
- `redis:`, `rediss:`, `unix:`, `redis+cluster:`, `redis+sentinel:`, `rediss+cluster:`,
  `rediss+sentinel:`: Redis (store/redis/urls.py reads them).

A backend declares what kind of medium it is itself (store/backend.py's Traits: remote,
shared, async_capable); the hooks read that, never the scheme. `open_location` checks that a
backend's declared traits hold (an async-capable one has an asynchronous side; a remote one is
async-capable).

Registrations are per process, made at import (the built-ins) or by the caller (a test's toy
backend, tests/store/test_toy_backend.py) before the store is opened; not locked against
concurrent registration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from caching_proxy.store.backend import Asynchronous
from caching_proxy.store.disk.store import (
    DEFAULT_LRU_INTERVAL,
    DEFAULT_SIZE_LIMIT,
    DISK_ERRORS,
    DiskStore,
)
from caching_proxy.store.layout import Store
from caching_proxy.store.redis.urls import SCHEMES as REDIS_SCHEMES
from caching_proxy.store.redis.urls import redact_store_url

__all__ = ["FILE", "STORE_ERRORS", "Opener", "Registration", "StoreOptions", "is_redis_url",
           "open_location", "register", "registration_for", "shown", "unregister"]

# How every backend's medium fails: OSError (Redis: StoreUnavailable; a new backend raises an
# OSError subclass too), or diskcache's own errors. The hooks turn these into pass-through.
STORE_ERRORS = (OSError, *DISK_ERRORS)
FILE = "file"  # the scheme of a plain path
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LEADING_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What open_store was given for the backend (each takes what applies to it)."""

    size_limit: int = DEFAULT_SIZE_LIMIT  # diskcache's bound; Redis bounds itself (maxmemory)
    lru_interval: float = DEFAULT_LRU_INTERVAL  # diskcache's recency granularity
    timeout: float = 1.0  # each network call's bound (Redis' socket timeouts)


# The Store over the backend a location names.
Opener = Callable[[str, StoreOptions], Store]


@dataclass(frozen=True, slots=True)
class Registration:
    scheme: str
    opener: Opener
    # The location as it may be shown (in errors and logs): without its passwords.
    show: Callable[[str], str]


_registered: dict[str, Registration] = {}


def register(scheme: str, opener: Opener, show: Callable[[str], str] | None = None) -> None:
    """Open locations starting with `scheme:` with `opener(location, options)`, showing them
    with `show` (default: any URL's passwords replaced by `***`). A scheme registered again is
    replaced."""
    scheme = scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        raise ValueError(f"invalid scheme {scheme!r}")
    _registered[scheme] = Registration(scheme, opener, show or redact_store_url)


def unregister(scheme: str) -> None:
    """Forget `scheme` (a test's own backend, once its tests are done)."""
    _registered.pop(scheme.lower(), None)


def registration_for(location: str) -> Registration:
    """The registration `location` names: its scheme's, else (no scheme, or one that is not
    registered and not followed by `//`: a folder named `a:b`) the plain path's. ValueError
    for `x://...` of an unregistered scheme `x`."""
    found = _LEADING_SCHEME.match(location)
    if found:
        scheme = found[1].lower()
        if scheme in _registered:
            return _registered[scheme]
        if location[found.end():].startswith("//"):
            known = ", ".join(sorted(f"{name}:" for name in _registered))
            raise ValueError(f"no store is registered for {scheme}: (known: {known})")
    return _registered[FILE]


def open_location(location: str, options: StoreOptions | None = None) -> Store:
    """The store at `location`, opened by its scheme's opener (ValueError for a location its
    opener cannot read; the medium's errors, STORE_ERRORS, when it cannot be opened). TypeError
    for a backend whose declared traits do not hold."""
    store = registration_for(location).opener(location, options or StoreOptions())
    backend, traits = store.backend, store.backend.traits
    problem = ("is remote, so must be async_capable" if traits.remote and not traits.async_capable
               else "declares async_capable without call_async and close_async"
               if traits.async_capable and not isinstance(backend, Asynchronous) else "")
    if problem:
        store.close()
        raise TypeError(f"{type(backend).__name__} {problem}")
    return store


def shown(location: str) -> str:
    """`location` as it may be shown: its passwords replaced by `***` (whether or not it names
    a registered scheme)."""
    try:
        return registration_for(location).show(location)
    except ValueError:
        return redact_store_url(location)


def is_redis_url(location: str) -> bool:
    """Whether `location` names a Redis store (cli/option_values.py's `auto` memory size)."""
    return location.startswith(REDIS_SCHEMES)


# -- the built-in backends -------------------------------------------------------------------


def _folder(location: str) -> str:
    """The folder a `file:` URL or a plain path names."""
    if not location.lower().startswith(FILE + ":"):
        return location
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ValueError(f"not a local folder: {location!r} (file:///path/to/folder)")
    if not parts.path:
        raise ValueError(f"no folder in {location!r}")
    return unquote(parts.path)


def _open_folder(location: str, options: StoreOptions) -> Store:
    return DiskStore(_folder(location), options.size_limit, options.lru_interval)


def _open_redis(location: str, options: StoreOptions) -> Store:
    # Imported on use: redis-py is loaded only for a Redis store.
    from caching_proxy.store.redis.store import RedisStore

    return RedisStore(location, timeout=options.timeout)


register(FILE, _open_folder, show=lambda location: location)
for _form in REDIS_SCHEMES:
    register(_form.split(":", 1)[0], _open_redis)
